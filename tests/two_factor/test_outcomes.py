"""One outcome table for code checks and callbacks: the same verdict, the same sentence."""

from __future__ import annotations

import pytest

from two_factor.gateways.errors import Blocked, InvalidCode, RequestNotFound, TooManyAttempts
from two_factor.models import Status
from two_factor.outcomes import OUTCOMES, VERIFY_VERDICTS, outcome_of, outcome_of_error


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (TooManyAttempts(), "too_many_attempts"),
        (RequestNotFound(), "expired"),
        (Blocked(), "blocked"),
    ],
)
def test_a_check_error_and_its_callback_verdict_read_the_same(error, verdict):
    assert outcome_of_error(error) is OUTCOMES[verdict]


def test_an_expired_callback_and_an_expired_check_say_the_same_sentence():
    assert outcome_of("expired") == outcome_of_error(RequestNotFound())
    assert outcome_of("expired").status == Status.EXPIRED


def test_a_wrong_code_is_not_an_ending_outcome():
    assert outcome_of_error(InvalidCode()) is None


@pytest.mark.parametrize("verdict", ["too_many_attempts", "delivered", "", "COMPLETED"])
def test_only_verdicts_verify_reports_are_taken_from_callbacks(verdict):
    assert outcome_of(verdict) is None


def test_every_verify_verdict_has_an_outcome_and_every_failure_a_sentence():
    assert set(OUTCOMES) >= VERIFY_VERDICTS
    assert all(o.sentence for o in OUTCOMES.values() if o.status != Status.VERIFIED)
