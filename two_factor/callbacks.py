"""Receiving Vonage Verify v2's status callbacks: store each once, then apply it to the
verification state machine through ``services``, in one transaction.

The webhook (``two_factor.webhooks``) first proves a callback comes from the provider
and checks its shape (``gateways.vonage.callbacks``); :func:`callback_receive` does the
rest. What a callback's status means for the verification comes from the one outcome
table (``two_factor.outcomes``), shared with code checks.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Mapping
from typing import Any

from django.db import IntegrityError, transaction

from two_factor import services
from two_factor.channels import CHANNELS
from two_factor.gateways.vonage.callbacks import CallbackRefused
from two_factor.models import ProviderCallback, Status, Verification
from two_factor.outcomes import outcome_of

logger = logging.getLogger(__name__)

_CLIENT_REF = re.compile(r"[0-9a-fA-F]{16}")


def callback_receive(*, token_id: str, payload: Mapping[str, Any]) -> ProviderCallback:
    """Store the callback and apply it, in one transaction: once this returns, it is
    safe to answer 2xx. A token id seen before raises CallbackRefused (409)."""
    with transaction.atomic():
        try:
            with transaction.atomic():
                record = ProviderCallback.objects.create(
                    token_id=token_id,
                    request_id=payload["request_id"],
                    type=payload["type"],
                    status=payload["status"],
                    body=dict(payload),
                )
        except IntegrityError:
            raise CallbackRefused(409, "This token was already used.") from None
        verification = callback_verification_find(payload=payload)
        record.verification = verification
        record.result = callback_apply(verification=verification, payload=payload)
        record.save(update_fields=["verification", "result"])
    logger.info("Provider callback %s %s: %s", record.type, record.status, record.result)
    return record


def callback_settle(*, payload: Mapping[str, Any]) -> str:
    """Apply a callback that arrives without a token to store (the sandbox's own, when
    its network page fails a silent authentication and no webhook is configured), in
    one transaction; return what it did, in words."""
    with transaction.atomic():
        verification = callback_verification_find(payload=payload)
        return callback_apply(verification=verification, payload=payload)


def callback_verification_find(*, payload: Mapping[str, Any]) -> Verification | None:
    """The verification a callback is about, locked for the rest of the transaction.

    By ``request_id`` (the newest, should two share it after an adopted 409); else by
    ``client_ref`` (the first 16 hex characters of our id, see
    ``gateways.base.provider_client_ref``), but only a verification that doesn't know
    its request id yet: one that knows another id belongs to another provider request.
    """
    request_id = payload["request_id"]
    found = Verification.objects.select_for_update().filter(request_id=request_id).first()
    if found is not None:
        return found
    client_ref = payload.get("client_ref")
    # fullmatch: `$` would also match before a trailing newline, and UUID() refuse it.
    if not isinstance(client_ref, str) or not _CLIENT_REF.fullmatch(client_ref):
        return None
    prefix = client_ref.lower()
    # A range on the primary key: a prefix match that works on every database's UUID type.
    candidates = list(
        Verification.objects.select_for_update().filter(
            pk__gte=uuid.UUID(prefix + "0" * 16),
            pk__lte=uuid.UUID(prefix + "f" * 16),
            request_id="",
        )[:2]
    )
    return candidates[0] if len(candidates) == 1 else None


def callback_apply(*, verification: Verification | None, payload: Mapping[str, Any]) -> str:
    """Apply a parsed callback to its verification; return what it did, in words.

    Never moves a verification backwards: the state machine refuses what doesn't
    follow from the current status, so a repeated or late callback changes nothing.
    """
    if verification is None:
        return "ignored: no verification has this request id"
    kind, status = payload["type"], payload["status"]
    if kind not in ("event", "summary"):
        return f"ignored: {kind} callbacks are not used"
    reason = f"provider callback: {kind} {status}"
    steps = [_where(verification)]

    if (
        kind == "event"
        and status in _STEP_ENDED
        and payload.get("channel") in verification.workflow[: verification.step]
    ):
        # A step the workflow has already left (we moved on first, or it arrived late).
        return f"ignored: the {payload.get('channel')} step is over"

    if _code_less_step_ended(verification, payload):
        # Silent authentication could not vouch for the number: Verify moves on to the
        # workflow's next step, and so do we, saying why. Not the request's verdict.
        services.verification_step_started(
            verification,
            step=verification.step + 1,
            reason=reason,
            notice=services.step_gave_up_notice(verification),
        )
        steps.append(_where(verification))
        return " → ".join(steps) if len(steps) > 1 else f"no change: {steps[0]}"

    started = _latest_step_started(verification, payload)
    if verification.status == Status.SENT and started > verification.step:
        services.verification_step_started(verification, step=started, reason=reason)
        if verification.step == started:
            steps.append(_where(verification))

    outcome = outcome_of(status)
    if outcome is not None and verification.status != outcome.status:
        to = outcome.status
        if to == Status.VERIFIED:
            services.verification_mark_verified(verification=verification, reason=reason)
        else:
            services.transition_if_allowed(
                verification, to, reason=reason, failure_reason=outcome.sentence
            )
        if verification.status == to:
            steps.append(f"{to} (blocked)" if status == "blocked" else to)

    if len(steps) == 1:
        return f"no change: the verification is {verification.status}"
    return " → ".join(str(step) for step in steps)


# What an event says of a step that ended without the voter verifying.
_STEP_ENDED = frozenset({"failed", "expired", "rejected", "user_rejected"})


def _code_less_step_ended(verification: Verification, payload: Mapping[str, Any]) -> bool:
    row = CHANNELS.get(verification.channel)
    return (
        payload["type"] == "event"
        and verification.status == Status.SENT
        and row is not None
        and not row.takes_code
        and payload.get("channel") == verification.channel
        and payload["status"] in _STEP_ENDED
        and bool(verification.channels_left)
    )


def _where(verification: Verification) -> str:
    """The status in the callback's result, with the channel of a code that is out."""
    if verification.status == Status.SENT:
        return f"{verification.status} ({verification.channel})"
    return str(verification.status)


def _latest_step_started(verification: Verification, payload: Mapping[str, Any]) -> int:
    """The furthest step of the verification's workflow the callback shows running or
    run (an event names its step's channel; a summary lists every step it initiated);
    -1 for none. Whatever the channel: each is a row of two_factor/channels.py."""
    if payload["type"] == "event":
        named = {payload.get("channel")}
    else:
        named = {
            step.get("channel")
            for step in payload.get("workflow") or []
            if isinstance(step, Mapping) and step.get("initiated_at")
        }
    indexes = [i for i, channel in enumerate(verification.workflow) if channel in named]
    return max(indexes, default=-1)
