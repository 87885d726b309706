"""The channels a code can reach a voter by, and the workflows that try them in order.

A channel is a row of :data:`CHANNELS`: its Verify v2 name, what the voter is told
while it runs and once it has run, the offer to switch to it, its deadline, and how each
gateway sends it. Services, the status display, callbacks, the gateways (through the
:class:`~two_factor.gateways.base.WorkflowStep` built here) and the templates read this
table; nothing else names a channel (docs/ARCHITECTURE.md, "How to add a channel").

A workflow is a sequence of channel names, at most :data:`MAX_STEPS` of them (Verify's
limit). Operators choose it (``TWO_FACTOR_WORKFLOW``, and per region
``TWO_FACTOR_WORKFLOW_BY_REGION``); a verification keeps the one it started with.

This module reads settings only when asked, never at import: the settings themselves
import it to validate the workflows they are given.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from two_factor.gateways.base import WorkflowStep
from two_factor.gateways.vonage import steps as vonage

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise  # types only: a development dependency

# Verify v2 takes one to three workflow steps.
MAX_STEPS = 3
# What runs when an operator chooses nothing: the code by SMS, then a call.
DEFAULT_WORKFLOW = ("sms", "voice")


def _no_params() -> Mapping[str, Any]:
    return {}


@dataclass(frozen=True)
class Channel:
    """One way a code reaches the voter.

    The sentences take ``%(number)s``, the masked number. ``timeout`` is None for the
    request's ``channel_timeout`` (``TWO_FACTOR_CHANNEL_TIMEOUT``: Verify moves every
    code step on after it). ``params`` are the step's fields besides ``to``, read from
    settings when a verification starts; ``sends_with`` how each gateway that needs its
    own way builds the step (the sandbox sends every channel to its inbox).
    """

    name: str
    # The start page: what the code goes by (the number follows), and its button.
    promise: StrOrPromise
    ask: StrOrPromise
    # The start page, when this channel is the second step.
    fallback: StrOrPromise
    # The status line while this step is the current one.
    running: StrOrPromise
    # The timeline's line for this step, once it has started.
    step_label: StrOrPromise
    # The button that switches to this channel from an earlier step, and the status
    # line once it is pressed, until the step starts.
    offer: StrOrPromise
    switching: StrOrPromise
    # The countdown while the step before this one runs, and its words at zero.
    coming: StrOrPromise
    coming_now: StrOrPromise
    timeout: int | None = None
    params: Callable[[], Mapping[str, Any]] = _no_params
    sends_with: Mapping[str, Callable[..., Any]] = field(default_factory=dict)
    # False: no code is sent; the voter's phone opens the request's check URL (the
    # `action` link) and the network vouches for the number. Verify takes such a step
    # first only, and a workflow needs a code step after it.
    takes_code: bool = True
    action: StrOrPromise | None = None
    # Said when the step ends without verifying (it failed, or its time ran out) and
    # the workflow moves on.
    gave_up: StrOrPromise | None = None

    def deadline(self, *, now: datetime) -> datetime:
        from django.conf import settings

        seconds = self.timeout or int(settings.TWO_FACTOR_CHANNEL_TIMEOUT)
        return now + timedelta(seconds=seconds)


def _silent_auth_params() -> Mapping[str, Any]:
    from django.conf import settings
    from django.urls import reverse

    # Where Verify sends the phone back, with request_id and code (silent_auth_return).
    return {"redirect_url": settings.TWO_FACTOR_SITE_URL + reverse("two_factor:silent_return")}


def _whatsapp_params() -> Mapping[str, Any]:
    from django.conf import settings

    # Verify requires the account's WhatsApp Business number (pollstr/settings/vonage.py).
    return {"from": settings.VONAGE_WHATSAPP_FROM}


CHANNELS: dict[str, Channel] = {
    row.name: row
    for row in (
        Channel(
            name="sms",
            promise=_("To vote, confirm it's you: we'll send a one-time code by SMS to"),
            ask=_("Text me a code"),
            fallback=_("If it doesn't arrive, we'll text it to you instead."),
            running=_("We sent a code by SMS to %(number)s."),
            step_label=_("Sent by SMS"),
            offer=_("Text it to me instead"),
            switching=_("Sending your code by SMS…"),
            coming=_("No code yet? We'll text it to you in"),
            coming_now=_("No code yet? We're texting it to you now."),
            sends_with={"vonage": vonage.sms},
        ),
        Channel(
            name="whatsapp",
            promise=_("To vote, confirm it's you: we'll send a one-time code by WhatsApp to"),
            ask=_("Send me a code by WhatsApp"),
            fallback=_("If it doesn't arrive, we'll send it by WhatsApp instead."),
            running=_("We sent a code by WhatsApp to %(number)s."),
            step_label=_("Sent by WhatsApp"),
            offer=_("Send it by WhatsApp instead"),
            switching=_("Sending your code by WhatsApp…"),
            coming=_("No code yet? We'll send it by WhatsApp in"),
            coming_now=_("No code yet? We're sending it by WhatsApp now."),
            params=_whatsapp_params,
            sends_with={"vonage": vonage.whatsapp},
        ),
        Channel(
            name="voice",
            promise=_("To vote, confirm it's you: we'll call you with a one-time code on"),
            ask=_("Call me with a code"),
            fallback=_("If it doesn't arrive, we'll call you instead."),
            running=_("We're calling %(number)s to read out the code."),
            step_label=_("Calling you with the code"),
            offer=_("Call me instead"),
            switching=_("Calling you with your code…"),
            coming=_("No code yet? We'll call you in"),
            coming_now=_("No code yet? We're calling you now."),
            sends_with={"vonage": vonage.voice},
        ),
        Channel(
            name="silent_auth",
            promise=_("To vote, confirm it's you: your mobile network confirms"),
            ask=_("Confirm my number"),
            fallback=_("If that doesn't work, your mobile network will confirm it."),
            running=_(
                "Continue on your phone: your mobile network confirms %(number)s is yours. "
                "It needs mobile data, not Wi-Fi."
            ),
            step_label=_("Confirming your number with your mobile network"),
            offer=_("Confirm it with my mobile network instead"),
            switching=_("Confirming your number with your mobile network…"),
            coming=_("No code yet? Your mobile network will confirm it in"),
            coming_now=_("No code yet? Your mobile network is confirming it now."),
            takes_code=False,
            action=_("Continue on your phone"),
            gave_up=_(
                "Your mobile network couldn't confirm your number (it needs mobile data, "
                "not Wi-Fi, on the phone with this number)."
            ),
            params=_silent_auth_params,
            sends_with={"vonage": vonage.silent_auth},
        ),
    )
}


def channel_get(name: str) -> Channel:
    """The row of ``name``; ``KeyError`` for a channel the table does not have."""
    return CHANNELS[name]


def workflow_parse(value: str, *, setting: str) -> tuple[str, ...]:
    """A workflow from its written form ("sms,whatsapp,voice"), refused with a sentence
    naming the setting and the bad value: empty, an unknown channel, a channel twice, or
    more steps than Verify takes."""
    names = tuple(part.strip().lower() for part in value.split(","))
    if not any(names):
        raise ImproperlyConfigured(f"{setting} is empty: name at least one channel.")
    return workflow_check(names, setting=setting)


def workflow_check(names: Sequence[str], *, setting: str) -> tuple[str, ...]:
    known = ", ".join(CHANNELS)
    for name in names:
        if name not in CHANNELS:
            raise ImproperlyConfigured(
                f"{setting}: unknown channel {name!r} (known: {known})."
                if name
                else f"{setting}: an empty step in {','.join(names)!r}."
            )
    seen: set[str] = set()
    for name in names:
        if name in seen:
            raise ImproperlyConfigured(f"{setting}: {name!r} appears twice in {','.join(names)!r}.")
        seen.add(name)
    for index, name in enumerate(names):
        if not CHANNELS[name].takes_code and index:
            raise ImproperlyConfigured(f"{setting}: {name!r} can only be the first step.")
    if not any(CHANNELS[name].takes_code for name in names):
        raise ImproperlyConfigured(
            f"{setting}: {','.join(names)!r} sends no code: add a channel after it for "
            "phones its first step cannot confirm (Wi-Fi, a computer)."
        )
    if len(names) > MAX_STEPS:
        raise ImproperlyConfigured(
            f"{setting}: {','.join(names)!r} has {len(names)} steps; Verify takes at most "
            f"{MAX_STEPS}."
        )
    return tuple(names)


def workflow_for(*, country: str) -> tuple[str, ...]:
    """The workflow a verification to a number of ``country`` (ISO region) runs."""
    from django.conf import settings

    by_region: Mapping[str, Sequence[str]] = settings.TWO_FACTOR_WORKFLOW_BY_REGION
    return tuple(by_region.get(country.upper(), settings.TWO_FACTOR_WORKFLOW))


def workflow_steps(workflow: Iterable[str]) -> list[WorkflowStep]:
    """The workflow as the gateway sends it, with each step's parameters read now."""
    return [
        WorkflowStep(channel=row.name, params=dict(row.params()), sends_with=row.sends_with)
        for row in map(channel_get, workflow)
    ]
