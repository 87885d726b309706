"""Live status: every transition renders the status partial once per language whose
pages are open and sends it to the verification's group in that language; each connected
page gets it with its own CSRF token filled in (so its forms post) and swaps it in."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from uuid import UUID

from channels.layers import get_channel_layer
from django.utils import translation

from pollstr.channel_layers import group_send
from pollstr.languages import language_group, languages_listening

if TYPE_CHECKING:
    from two_factor.models import Verification, VerificationEvent

logger = logging.getLogger(__name__)


def verification_group(verification_id: UUID | str, language: str | None = None) -> str:
    """The group of the verification's pages in `language` (None: the default one)."""
    return language_group(_group_stem(verification_id), language)


def _group_stem(verification_id: UUID | str) -> str:
    return f"verification-{UUID(str(verification_id)).hex}"


# Stands where a form's CSRF token goes in the fragment rendered once for every socket;
# each consumer puts its own browser's token there (two_factor.consumers).
CSRF_PLACEHOLDER = "pollstr-csrf-token-placeholder"


@dataclass(frozen=True)
class Committed:
    """A verification as a transition committed it: the row as it saved it, the id of
    that transition's audit event, and the audit trail up to that event when the
    transition read it already (None: read when a page needs it)."""

    verification: Verification
    event_id: int
    events: list[VerificationEvent] | None = None

    def trail(self) -> list[VerificationEvent]:
        if self.events is not None:
            return self.events
        return list(self.verification.events.filter(pk__lte=self.event_id))


@dataclass(frozen=True)
class Rendered:
    """The status fragment and the version it shows (its newest audit event's id)."""

    html: str
    version: int


def verification_render(
    *,
    verification_id: UUID | str,
    language: str | None = None,
    as_of: Committed | None = None,
) -> Rendered | None:
    """The status fragment as every socket of this verification in `language` (None: the
    active one) should see it: the row as stored now, or ``as_of``, the row as a
    transition committed it, which shows that state and no later one, without reading
    the row again."""
    return _renderings(verification_id=verification_id, languages=[language], as_of=as_of)[0]


def _renderings(
    *,
    verification_id: UUID | str,
    languages: list[str | None],
    as_of: Committed | None,
) -> list[Rendered | None]:
    from two_factor.models import TRAIL_OF_VERIFICATION, VERIFICATION_BY_ID

    if as_of is None:
        # The trail before the row: the version then never claims more than the row
        # shows, so a socket drops only what is truly older (never a newer state).
        events = TRAIL_OF_VERIFICATION.all(verification_id)
        verification = VERIFICATION_BY_ID.first(verification_id)
        if verification is None:
            return [None for _language in languages]
    else:
        verification, events = as_of.verification, as_of.trail()
    return [render_fragment(verification, events=events, language=lang) for lang in languages]


def render_fragment(
    verification: Verification, *, events: list[VerificationEvent], language: str | None
) -> Rendered:
    """One rendering of the status in `language` (None: the active one), for every
    socket: the CSRF token is each socket's to fill in."""
    from django.template.loader import render_to_string

    from two_factor.status import STATUS_TEMPLATE, status_context

    with translation.override(language or translation.get_language()):
        context = {**status_context(verification, events=events), "csrf_token": CSRF_PLACEHOLDER}
        html = render_to_string(STATUS_TEMPLATE, context)
    return Rendered(html=html, version=int(context["version"]))  # type: ignore[call-overload]


def verification_publish(*, verification_id: UUID | str, as_of: Committed | None = None) -> None:
    """Render the status once per language whose pages are open, and send each rendering
    to the sockets of that language, with its version: a socket never swaps an older
    state over a newer one it showed, whichever publisher's message arrives first.
    ``as_of``: see `verification_render`."""
    if get_channel_layer() is None:
        return
    # No page open on it (the usual case while a worker sends): nothing to render. A page
    # that opens later gets the current state when its socket connects.
    stem = _group_stem(verification_id)
    listening = languages_listening(lambda code: language_group(stem, code))
    if not listening:
        return
    renderings = _renderings(
        verification_id=verification_id,
        languages=[listener.language for listener in listening],
        as_of=as_of,
    )
    for listener, rendered in zip(listening, renderings, strict=True):
        event: dict[str, Any] = {"type": "verification.changed"}
        if rendered is not None:
            event["html"] = rendered.html
            event["version"] = rendered.version
        group_send(listener.group, event, members=listener.members)


# --- the user's sessions changed: tell their sockets -------------------------------------


def user_sockets_group(user_id: Any) -> str:
    return f"user-sockets-{int(user_id)}"


def sockets_session_ended(*, user_id: Any, session_key: str | None) -> None:
    """This session logged out: its sockets close (the hash, never the key, travels)."""
    from two_factor.models import session_key_hash

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
