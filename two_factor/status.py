"""What the voter sees of a verification: one context and one template fragment for the
full page, htmx polling and websocket pushes (so the three can never drift apart), and
the timeline of steps in the product's words.

Showing never changes anything: what to show is computed from the row and the clock, as
healthchecks' `Check.get_status` does. A step whose deadline passed is shown as the step
it becomes (the reconciler makes it so within a sweep); nothing here writes.
"""

from __future__ import annotations

import copy
import functools
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from uuid import UUID

from django.conf import settings
from django.http import HttpRequest
from django.template.loader import render_to_string
from django.urls import get_script_prefix, get_urlconf, reverse
from django.utils import timezone, translation
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import gettext_lazy as _

from two_factor.channels import CHANNELS, Channel
from two_factor.forms import CodeForm
from two_factor.models import (
    TRAIL_OF_VERIFICATION,
    VERIFICATION_BY_ID,
    Status,
    Verification,
    VerificationEvent,
)
from two_factor.outcomes import OUTCOMES

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise  # types only: a development dependency

STATUS_TEMPLATE = "two_factor/verify.html#status"

# A code normally leaves within a second or two; past SLOW_AFTER seconds in queued or
# sending the page says so, and past STUCK_AFTER (or the resend cooldown, whichever is
# later, so the offer can be taken) it offers a new code.
SLOW_AFTER = 5
STUCK_AFTER = 20

HEADINGS: dict[str, StrOrPromise] = {
    Status.QUEUED: _("Sending your code"),
    Status.SENDING: _("Sending your code"),
    Status.SENT: _("Enter your code"),
    Status.CHECKING: _("Enter your code"),
    Status.VERIFIED: _("Verified"),
    Status.CONSUMED: _("Verified"),
    Status.FAILED: _("Code request failed"),
    Status.EXPIRED: _("This code expired"),
    Status.CANCELLED: _("Cancelled"),
}
# States that change by themselves within seconds: without JavaScript the page reloads.
SELF_REFRESHING = frozenset({Status.QUEUED, Status.SENDING, Status.CHECKING})
SELF_REFRESH_SECONDS = 2


def status_context(
    verification: Verification,
    *,
    error: str = "",
    malformed: str = "",
    typed_code: str = "",
    events: list[VerificationEvent] | None = None,
) -> dict[str, object]:
    """What the code page shows now. ``error`` is a refusal to say; ``malformed`` the
    sentence for a typed code that cannot be one, shown on the field with ``typed_code``
    kept in it to fix. ``events``: the row's audit trail in order, when the caller has
    read it already (one query otherwise). ``version`` is the newest event's id: what a
    socket uses to refuse a push older than the one it already showed (two_factor.live)."""
    now = timezone.now()
    if events is None:
        # The trail, then the row (as the pushes read them, two_factor.live): a worker may
        # have moved the row on since the caller read it, and the version must never
        # claim more than the row shows. The page keeps the newest state it was shown
        # (static/pollstr/live.js): an answer that arrives after a push of the state that
        # followed it must say it is older, not "as new".
        events = TRAIL_OF_VERIFICATION.all(verification.pk)
        verification = _as_stored(verification)
    verification = as_shown(verification, now=now)
    resend_in = verification.resend_available_in(now=now) if verification.is_live else 0
    wrong_code_event = None if malformed else _wrong_code_event(verification, events)
    code_error = "malformed" if malformed else "wrong" if wrong_code_event else ""
    return {
        "verification": verification,
        "urls": verification_urls(verification.pk),
        "version": max((event.pk for event in events), default=0),
        "row_stamp": row_stamp(verification.updated_at),
        "heading": HEADINGS.get(verification.status, _("Verify your phone")),
        "timeline": verification_timeline(verification, events),
        "resend_in": resend_in,
        **_channel_context(verification),
        **_waiting(verification, resend_in=resend_in),
        "wrong_code_event": wrong_code_event,
        "malformed": malformed,
        "code_error": code_error,
        "code_form": _code_form(invalid=bool(code_error), typed=typed_code),
        "refresh_without_js": _refresh_without_js(verification, resend_in=resend_in),
        "error": error,
    }


def _as_stored(verification: Verification) -> Verification:
    """The row as stored now (the caller's copy if it is gone), with the relations the
    caller's copy had loaded (its user)."""
    stored = VERIFICATION_BY_ID.first(verification.pk)
    if stored is None:
        return verification
    stored._state.fields_cache.update(verification._state.fields_cache)
    return stored


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def row_stamp(updated_at: datetime | None) -> int:
    """The row's `updated_at` in whole microseconds since the epoch (exact, unlike a
    float): the page puts it in its socket's URL, so the socket can tell whether the row
    changed since the page was rendered (two_factor.consumers)."""
    return 0 if updated_at is None else (updated_at - _EPOCH) // timedelta(microseconds=1)


# The code page's own URLs (two_factor/urls.py), each reversed once per process and
# filled in with the verification's id: a status rendering names seven of them.
VERIFICATION_URLS = (
    "verify",
    "submit_code",
    "switch_channel",
    "complete",
    "wrong_number",
    "resend",
    "cancel",
)
_ID_STANDIN = UUID(int=0)


def verification_urls(verification_id: UUID) -> dict[str, str]:
    """{name: URL} of VERIFICATION_URLS for this verification, as reverse() says them."""
    patterns = _url_patterns(get_script_prefix(), get_urlconf())
    standin, real = str(_ID_STANDIN), str(verification_id)
    return {name: pattern.replace(standin, real) for name, pattern in patterns.items()}


@functools.lru_cache(maxsize=8)
def _url_patterns(script_prefix: str, urlconf: str | None) -> dict[str, str]:
    # Keyed by what reverse() reads besides the name: the script prefix and the URLconf.
    return {
        name: reverse(f"two_factor:{name}", args=[_ID_STANDIN], urlconf=urlconf)
        for name in VERIFICATION_URLS
    }


def status_render(request: HttpRequest, verification: Verification) -> str:
    return render_to_string(STATUS_TEMPLATE, status_context(verification), request=request)


def _channel_context(verification: Verification) -> dict[str, object]:
    """What the page says about channels, all from the table (two_factor/channels.py):
    the status line of the current step, the offers to switch to a later step of the
    workflow, and the countdown to the next one."""
    row = CHANNELS.get(verification.channel)
    nothing: dict[str, object] = {
        "channel_said": "",
        "offers": [],
        "next_channel": None,
        "next_in": None,
        "takes_code": row is None or row.takes_code,
        "channel_action": None,
    }
    if verification.status != Status.SENT:
        return nothing
    if verification.switching_to in CHANNELS:
        # Asked for: the provider is being told. Nothing else to offer until it starts.
        return nothing | {"channel_said": str(CHANNELS[verification.switching_to].switching)}
    # (A channel since taken out of the table is skipped, never an error.)
    left: list[Channel] = [CHANNELS[n] for n in verification.channels_left if n in CHANNELS]
    return nothing | {
        "channel_said": _said(verification),
        "offers": left,
        "next_channel": left[0] if left else None,
        "next_in": verification.seconds_until(verification.channel_deadline) if left else None,
        # A step without a code (silent authentication): the link the phone opens.
        "channel_action": row.action if row and verification.check_url else None,
    }


def _said(verification: Verification) -> str:
    row = CHANNELS.get(verification.channel)
    return str(row.running % {"number": verification.masked_number}) if row else ""


def as_shown(verification: Verification, *, now: datetime) -> Verification:
    """The row as the voter should see it now: a step past its deadline shows as the step
    it turns into (the workflow's next channel, or expired after the last). An unsaved
    copy: the row itself is left to the reconciler."""
    deadline = verification.channel_deadline
    if deadline is None or deadline > now or verification.status != Status.SENT:
        return verification
    shown = copy.copy(verification)
    while shown.channel_deadline is not None and shown.channel_deadline <= now:
        if not shown.channels_left:
            expired = OUTCOMES["expired"]
            shown.status, shown.failure_reason = expired.status, expired.sentence
            break
        shown.step += 1
        shown.channel = shown.workflow[shown.step]
        row = CHANNELS.get(shown.channel)
        if row is None:
            break  # a channel since taken out of the table: shown as the row has it
        shown.channel_deadline = row.deadline(now=shown.channel_deadline)
    return shown


def _waiting(verification: Verification, *, resend_in: int) -> dict[str, int | None]:
    """Seconds until "taking longer than usual" and until a new code is offered, while
    the code has not left yet (None otherwise; 0 means now)."""
    if verification.status not in (Status.QUEUED, Status.SENDING):
        return {"slow_in": None, "stuck_in": None}
    waited = (timezone.now() - verification.created_at).total_seconds()
    return {
        "slow_in": max(0, int(SLOW_AFTER - waited + 0.999)),
        "stuck_in": max(0, int(STUCK_AFTER - waited + 0.999), resend_in),
    }


def _wrong_code_event(verification: Verification, events: list[VerificationEvent]) -> int | None:
    """The id of the event that just rejected a code, if that is the latest thing that
    happened: the sentence belongs to that moment, not to the states that follow."""
    if not verification.accepts_code or not verification.wrong_codes or verification.notice:
        return None
    latest = events[-1] if events else None
    if latest is None or latest.from_status != Status.CHECKING:
        return None
    return latest.pk if latest.to_status == verification.status else None


def _refresh_without_js(verification: Verification, *, resend_in: int) -> str:
    """The page's <meta http-equiv="refresh"> content for browsers without JavaScript
    (empty for none): a verified code goes on to completion at once; a page that will
    change by itself reloads when it does (a state about to move, the new-code button's
    wait, the call), so nothing it says is a countdown frozen in place."""
    pk = verification.pk
    if verification.status == Status.VERIFIED:
        return f"0;url={verification_urls(pk)['complete']}"
    if verification.status in SELF_REFRESHING or (
        verification.status == Status.SENT and verification.switching_to
    ):
        seconds: int | None = SELF_REFRESH_SECONDS
    elif verification.is_live:
        due = [resend_in, verification.seconds_until(verification.channel_deadline)]
        seconds = min((s for s in due if s), default=None)
    else:
        seconds = None
    if seconds is None:
        return ""
    # Always to the code page: a page answering a form's POST must not reload that POST.
    return f"{seconds};url={verification_urls(pk)['verify']}"


@dataclass(frozen=True)
class CodeFormHtml:
    """The code form's fields as the page shows them, rendered from CodeForm (which
    defines them) into strings: every status push shows the form, and rendering its two
    widgets through Django's form templates was a third of a push's rendering."""

    code: SafeString
    code_id: str
    code_label: str
    help_text: str
    remember: SafeString  # empty without TWO_FACTOR_REMEMBER_DAYS
    remember_id: str
    remember_label: str


def _code_form(*, invalid: bool, typed: str) -> CodeFormHtml:
    if typed:  # what a voter typed is never cached
        return _code_form_html(invalid=invalid, typed=typed)
    return _code_form_cached(
        invalid,
        translation.get_language(),
        settings.TWO_FACTOR_CODE_LENGTH,
        settings.TWO_FACTOR_REMEMBER_DAYS,
    )


@functools.lru_cache(maxsize=64)
def _code_form_cached(invalid: bool, language: str, length: int, days: int) -> CodeFormHtml:
    # The key is everything the rendering depends on: the verdict, the language, and
    # the settings CodeForm reads.
    return _code_form_html(invalid=invalid, typed="")


def _code_form_html(*, invalid: bool, typed: str) -> CodeFormHtml:
    form = CodeForm(initial={"code": typed} if typed else None)
    # This form's own copy of the widget (Form.fields is per instance).
    attrs = form.fields["code"].widget.attrs
    # (The template preserves the whole <form> across swaps, so the input carries no
    # hx-preserve of its own: htmx would tear a nested preserved element out of it.)
    if invalid:
        attrs.update({"aria-invalid": "true", "aria-describedby": "id_code_helptext id_code_error"})
    code = form["code"]
    remember = form["remember"] if "remember" in form.fields else None
    return CodeFormHtml(
        code=mark_safe(str(code)),  # noqa: S308 (Django rendered and escaped it)
        code_id=code.id_for_label,
        code_label=str(code.label),
        help_text=str(code.help_text),
        remember=mark_safe(str(remember) if remember is not None else ""),  # noqa: S308
        remember_id=remember.id_for_label if remember is not None else "",
        remember_label=str(remember.label) if remember is not None else "",
    )


# --- the timeline ----------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    status: str
    label: str  # in the active language
    state: str  # "done", "current", "failed" or "todo"
    at: datetime | None
    # The channel of a "sent" step (one per channel the code went by).
    channel: str = ""
    # `at` in the active time zone, as ``|date:"c"`` and ``|time:"H:i:s"`` say it ("" for
    # a step not reached). Formatted here: through the template's filters, and with the
    # labels lazy, the timeline was a third of a status rendering (every push has one).
    at_iso: str = ""
    at_clock: str = ""


def _step(
    status: str, label: StrOrPromise, state: str, at: datetime | None, channel: str = ""
) -> Step:
    shown = None if at is None else timezone.localtime(at)
    return Step(
        status=status,
        label=str(label),
        state=state,
        at=at,
        channel=channel,
        at_iso="" if shown is None else shown.isoformat(),
        at_clock="" if shown is None else shown.strftime("%H:%M:%S"),
    )


def verification_timeline(
    verification: Verification, events: list[VerificationEvent] | None = None
) -> list[Step]:
    """Request received, sending, then one step per channel as the code went by it (from
    the audit trail ``events``, in order; read when not given), then verified; or, once
    it ended badly, what happened and how it ended."""
    reached: dict[str, datetime] = {}
    by_channel: dict[str, datetime] = {}
    for event in TRAIL_OF_VERIFICATION.all(verification.pk) if events is None else events:
        reached.setdefault(event.to_status, event.created_at)
        if event.to_status == Status.SENT and event.channel:
            by_channel.setdefault(event.channel, event.created_at)
    current = verification.status
    if current == Status.CHECKING:
        current = Status.SENT
    if current == Status.CONSUMED:
        current = Status.VERIFIED
    ended_badly = current in (Status.FAILED, Status.EXPIRED, Status.CANCELLED)

    def state(status: str, at: datetime | None) -> str:
        if status == current:
            return "done" if status == Status.VERIFIED else "current"
        return "done" if at is not None else "todo"

    steps = [
        _step(status, label, state(status, reached.get(status)), reached.get(status))
        for status, label in (
            (Status.QUEUED, _("Request received")),
            (Status.SENDING, _("Sending your code")),
        )
    ]
    # Each channel the code went by; the shown step (a deadline just passed) even before
    # its event; before any, the first channel the code will go by.
    channels = list(by_channel)
    if current == Status.SENT and verification.channel and verification.channel not in channels:
        channels.append(verification.channel)
    if not channels and verification.workflow and not ended_badly:
        channels.append(verification.workflow[0])
    for channel in channels:
        at = by_channel.get(channel)
        if current == Status.SENT and channel == verification.channel:
            channel_state = "current"
        else:
            channel_state = "done" if at is not None else "todo"
        # A channel since taken out of the table still shows, by its name.
        row = CHANNELS.get(channel)
        label: StrOrPromise = row.step_label if row else channel
        steps.append(_step(Status.SENT, label, channel_state, at, channel=channel))
    verified_at = reached.get(Status.VERIFIED)
    steps.append(
        _step(Status.VERIFIED, _("Verified"), state(Status.VERIFIED, verified_at), verified_at)
    )
    if ended_badly:
        label = {
            Status.FAILED.value: _("Failed"),
            Status.EXPIRED.value: _("Expired"),
            Status.CANCELLED.value: _("Cancelled"),
        }[current]
        steps = [step for step in steps if step.at is not None]
        steps.append(_step(current, label, "failed", reached.get(current)))
    return steps
