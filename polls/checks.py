"""Start-up checks of the polls app (run by `manage.py check`, `migrate` and the server)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks


@checks.register()
def vote_hash_keys_check(app_configs: Any, **kwargs: Any) -> list[checks.CheckMessage]:
    if settings.VOTE_HASH_KEYS:
        return []
    return [
        checks.Warning(
            "VOTE_HASH_KEYS is not set: votes are keyed with SECRET_KEY, so rotating "
            "SECRET_KEY would let every phone vote again in old polls.",
            hint="Set VOTE_HASH_KEYS=v1:<a long random key> (docs/OPERATIONS.md, "
            '"Rotating secrets"), then run `manage.py rekey_vote_hashes`.',
            id="polls.W001",
        )
    ]
