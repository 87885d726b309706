"""What a provider's verdict means for a verification: one table for code checks and
signed callbacks alike, so a voter reads the same sentence whichever way it arrived.

A verdict is named in Verify's own words (a callback's ``status``); a gateway error
raised by a code check is first mapped to the same names (`outcome_of_error`).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.utils.translation import gettext_noop

from two_factor.gateways.errors import (
    Blocked,
    GatewayError,
    RequestNotFound,
    TooManyAttempts,
)
from two_factor.models import Status


@dataclass(frozen=True)
class Outcome:
    status: Status
    # What the voter reads, stored in English and translated when shown; empty for success.
    sentence: str


EXPIRED = gettext_noop("This code has expired. Ask for a new code.")
TOO_MANY_WRONG = gettext_noop("That code was wrong too many times. Ask for a new code.")

OUTCOMES: dict[str, Outcome] = {
    "completed": Outcome(Status.VERIFIED, ""),
    "failed": Outcome(
        Status.FAILED,
        gettext_noop("We couldn't confirm your code. Ask for a new code to try again."),
    ),
    "too_many_attempts": Outcome(Status.FAILED, TOO_MANY_WRONG),
    "user_rejected": Outcome(
        Status.FAILED,
        gettext_noop(
            "This code request was declined on your phone. If that wasn't you, ask for a new code."
        ),
    ),
    "rejected": Outcome(
        Status.FAILED,
        gettext_noop(
            "Our verification provider refused to send a code to this number. "
            "Check the number, then ask for a new code."
        ),
    ),
    "blocked": Outcome(Status.FAILED, Blocked.default_message),
    "expired": Outcome(Status.EXPIRED, EXPIRED),
}

# Gateway errors from a code check that end the verification, by verdict name.
_ERROR_OUTCOMES: tuple[tuple[type[GatewayError], str], ...] = (
    (TooManyAttempts, "too_many_attempts"),
    (RequestNotFound, "expired"),
    (Blocked, "blocked"),
)


# The verdicts Verify itself reports in callbacks; the table's other entries are reached
# only through gateway errors (a callback saying "too_many_attempts" is not one).
VERIFY_VERDICTS = frozenset(
    {"completed", "failed", "user_rejected", "rejected", "blocked", "expired"}
)


def outcome_of(verdict: str) -> Outcome | None:
    """The outcome of a verdict Verify reported ("completed", "expired", ...), or None."""
    return OUTCOMES[verdict] if verdict in VERIFY_VERDICTS else None


def outcome_of_error(error: GatewayError) -> Outcome | None:
    """The outcome a gateway error from a code check stands for, or None."""
    for error_type, verdict in _ERROR_OUTCOMES:
        if isinstance(error, error_type):
            return OUTCOMES[verdict]
    return None
