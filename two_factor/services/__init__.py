"""Phone verification: the business rules. Views, tasks, consumers and callbacks call
these functions; nothing else changes a verification, a number or a session's flag.

Split by sub-domain (docs/ARCHITECTURE.md, "Layers"): `transitions` (the one status-change
path), `phone_numbers`, `sending`, `checking`, `steps` (next channel, expiry, cancel),
`reconciler`, `completion`, `budget` (the SMS caps and the conversion governor),
`devices` (remembered devices), with `refusals` and `delivery` (tasks, provider) beneath.
This package re-exports the public functions, so callers write `services.verification_start`.
"""

from __future__ import annotations

from two_factor.models import session_key_hash
from two_factor.services.budget import governor_lift
from two_factor.services.checking import (
    CHECK_AGAIN,
    verification_check,
    verification_check_gave_up,
    verification_mark_verified,
    verification_submit_code,
)
from two_factor.services.completion import verification_complete
from two_factor.services.devices import (
    device_find,
    device_remember,
    device_verify,
    devices_forget,
)
from two_factor.services.phone_numbers import NUMBER_MOVED, number_accept, phone_number_bind
from two_factor.services.reconciler import SEND_UNCONFIRMED, verification_reconcile
from two_factor.services.refusals import AlreadyCompleted, MalformedCode, VerificationRefused
from two_factor.services.sending import (
    SEND_GAVE_UP,
    verification_resend,
    verification_retry_at,
    verification_send,
    verification_send_gave_up,
    verification_start,
)
from two_factor.services.steps import (
    SWITCH_NOT_DONE,
    step_gave_up_notice,
    verification_cancel,
    verification_next_channel,
    verification_next_channel_gave_up,
    verification_provider_cancel,
    verification_provider_cancel_gave_up,
    verification_refresh,
    verification_step_started,
    verification_switch_channel,
)
from two_factor.services.transitions import (
    IllegalTransition,
    deadline_for,
    task_grace,
    transition,
    transition_if_allowed,
    verification_note,
)

__all__ = [
    "CHECK_AGAIN",
    "NUMBER_MOVED",
    "SEND_GAVE_UP",
    "SEND_UNCONFIRMED",
    "SWITCH_NOT_DONE",
    "AlreadyCompleted",
    "IllegalTransition",
    "MalformedCode",
    "VerificationRefused",
    "deadline_for",
    "device_find",
    "device_remember",
    "device_verify",
    "devices_forget",
    "governor_lift",
    "number_accept",
    "phone_number_bind",
    "session_key_hash",
    "step_gave_up_notice",
    "task_grace",
    "transition",
    "transition_if_allowed",
    "verification_cancel",
    "verification_check",
    "verification_check_gave_up",
    "verification_complete",
    "verification_mark_verified",
    "verification_next_channel",
    "verification_next_channel_gave_up",
    "verification_note",
    "verification_provider_cancel",
    "verification_provider_cancel_gave_up",
    "verification_reconcile",
    "verification_refresh",
    "verification_resend",
    "verification_retry_at",
    "verification_send",
    "verification_send_gave_up",
    "verification_start",
    "verification_step_started",
    "verification_submit_code",
    "verification_switch_channel",
]
