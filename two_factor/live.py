"""Live status: every transition renders the status partial once per language whose
pages are open and sends it to the verification's group in that language; each connected
page gets it with its own CSRF token filled in (so its forms post) and swaps it in."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from channels.layers import get_channel_layer
from django.utils import translation

from pollstr.channel_layers import group_send
from pollstr.languages import language_group, languages_listening

logger = logging.getLogger(__name__)


def verification_group(verification_id: UUID | str, language: str | None = None) -> str:
    """The group of the verification's pages in `language` (None: the default one)."""
    return language_group(f"verification-{UUID(str(verification_id)).hex}", language)


# Stands where a form's CSRF token goes in the fragment rendered once for every socket;
# each consumer puts its own browser's token there (two_factor.consumers).
CSRF_PLACEHOLDER = "pollstr-csrf-token-placeholder"


def verification_render(*, verification_id: UUID | str, language: str | None = None) -> str | None:
    """The status fragment as every socket of this verification in `language` (None: the
    active one) should see it."""
    from django.template.loader import render_to_string

    from two_factor.models import Verification
    from two_factor.status import STATUS_TEMPLATE, status_context

    verification = Verification.objects.filter(pk=verification_id).first()
    if verification is None:
        return None
    with translation.override(language or translation.get_language()):
        context = {**status_context(verification), "csrf_token": CSRF_PLACEHOLDER}
        return render_to_string(STATUS_TEMPLATE, context)


def verification_publish(*, verification_id: UUID | str) -> None:
    """Render the status once per language whose pages are open, and send each rendering
    to the sockets of that language."""
    if get_channel_layer() is None:
        return
    # No page open on it (the usual case while a worker sends): nothing to render. A page
    # that opens later gets the current state when its socket connects.
    for language, group in languages_listening(
        lambda code: verification_group(verification_id, code)
    ):
        event: dict[str, str] = {"type": "verification.changed"}
        html = verification_render(verification_id=verification_id, language=language)
        if html is not None:
            event["html"] = html
        group_send(group, event)


# --- the user's sessions changed: tell their sockets -------------------------------------


def user_sockets_group(user_id: Any) -> str:
    return f"user-sockets-{int(user_id)}"


def sockets_session_ended(*, user_id: Any, session_key: str | None) -> None:
    """This session logged out: its sockets close (the hash, never the key, travels)."""
    from two_factor.session import session_key_hash

    if session_key:
        event = {"type": "session.ended", "session": session_key_hash(session_key)}
        _publish_to_user(user_id, event)


def sockets_access_changed(*, user_id: Any) -> None:
    """Something about the user changed (their password): each socket checks again."""
    _publish_to_user(user_id, {"type": "access.changed"})


def _publish_to_user(user_id: Any, event: dict[str, str]) -> None:
    try:
        group_send(user_sockets_group(user_id), event)
    except Exception:
        # Logging out must work with the channel layer down; the periodic re-check closes
        # the sockets later.
        logger.exception("Could not tell the sockets of user %s", user_id)
