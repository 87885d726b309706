from __future__ import annotations

from typing import Any

from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_in

        # Django's receiver stamps `last_login` with `save(update_fields=...)`, compiling
        # the same UPDATE at every sign-in; this one writes the same column, signals
        # included, through the statement compiled once (pollstr/db/prepared.py).
        if user_logged_in.disconnect(dispatch_uid="update_last_login"):
            user_logged_in.connect(last_login_stamp, dispatch_uid="update_last_login")


def last_login_stamp(sender: Any, user: Any, **kwargs: Any) -> None:
    from django.utils import timezone

    from pollstr.db.prepared import save_fields

    user.last_login = timezone.now()
    save_fields(user, ["last_login"])
