"""The rate limits on asking for codes, entering numbers and submitting codes: each
refuses what it covers with a sentence and a wait, and nothing else."""

from __future__ import annotations

from typing import Any

import pytest
from django.utils import timezone

from tests.phone_numbers import NUMBER, OTHER_NUMBER
from tests.two_factor.verifications import latest_code, submit_code, wrong_code_for
from two_factor import services
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.services import VerificationRefused

pytestmark = pytest.mark.usefixtures("eager_tasks")


def _tighten(settings: Any, name: str) -> None:
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, name: (1, 600)}


def _start(user, session_key: str, ip: str) -> Verification:
    return services.verification_start(user=user, session_key=session_key, ip=ip)


def _assert_limited(refusal: VerificationRefused) -> None:
    assert refusal.message.startswith("Too many attempts. Try again in ")
    # A sliding window reopens within two windows (the refused event counts too).
    assert 1 <= refusal.retry_after <= 2 * 600


# Alice starts once from session key-1 at 192.0.2.1 (her number is NUMBER, Bob's
# OTHER_NUMBER, except for the per-number limit, where the two swap numbers after
# Alice's start). Then: (limit, a start it refuses, a start it leaves alone).
START_LIMITS = [
    pytest.param(
        "start_per_user",
        ("alice", "key-2", "192.0.2.2"),
        ("bob", "key-3", "192.0.2.3"),
        id="per-user: another session or address does not help",
    ),
    pytest.param(
        "start_per_number",
        ("bob", "key-2", "192.0.2.2"),
        ("alice", "key-3", "192.0.2.3"),
        id="per-number: it follows the number to another account",
    ),
    pytest.param(
        "start_per_session",
        ("bob", "key-1", "192.0.2.2"),
        ("bob", "key-3", "192.0.2.2"),
        id="per-session: another account in the same session does not help",
    ),
    pytest.param(
        "start_per_ip",
        ("bob", "key-2", "192.0.2.1"),
        ("bob", "key-3", "192.0.2.99"),
        id="per-IP: another account from the same address does not help",
    ),
]


@pytest.mark.parametrize(("limit", "refused", "allowed"), START_LIMITS)
def test_a_start_limit_refuses_the_starts_it_covers_and_only_those(
    user, make_user, phone, settings, limit, refused, allowed
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    _tighten(settings, limit)
    accounts = {"alice": user, "bob": make_user("bob")}
    _start(user, "key-1", "192.0.2.1")
    if limit == "start_per_number":
        PhoneNumber.objects.filter(user=user).update(number=OTHER_NUMBER)
        PhoneNumber.objects.create(user=accounts["bob"], number=NUMBER)
    else:
        PhoneNumber.objects.create(user=accounts["bob"], number=OTHER_NUMBER)
    account, session_key, ip = refused

    with pytest.raises(VerificationRefused) as refusal:
        _start(accounts[account], session_key, ip)

    _assert_limited(refusal.value)
    assert Verification.objects.count() == 1
    account, session_key, ip = allowed
    assert _start(accounts[account], session_key, ip).status == Status.QUEUED


def test_the_global_limit_refuses_everyone(user, make_user, phone, settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "start_global_daily": (1, 86400),
    }
    other = make_user("bob")
    PhoneNumber.objects.create(user=other, number=OTHER_NUMBER)
    _start(user, "key-1", "192.0.2.1")

    with pytest.raises(VerificationRefused) as refused:
        _start(other, "key-2", "192.0.2.2")

    assert refused.value.message.startswith("Too many attempts. Try again in ")
    assert 1 <= refused.value.retry_after <= 2 * 86400


def test_a_start_refused_by_a_limit_does_not_cancel_the_live_verification(user, phone, settings):
    _tighten(settings, "start_per_user")
    _start(user, "key-1", "192.0.2.1")
    live = Verification.objects.get()

    with pytest.raises(VerificationRefused):
        _start(user, "key-1", "192.0.2.1")

    live.refresh_from_db()
    assert live.status == Status.QUEUED


def test_codes_are_rate_limited_per_user(sent, settings, django_capture_on_commit_callbacks):
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, "check_per_user": (1, 60)}
    wrong = wrong_code_for(latest_code())
    submit_code(sent, wrong, django_capture_on_commit_callbacks)

    events = sent.events.count()

    # `sent` is the row as stored: on PostgreSQL the submission writes `checking` in one
    # statement before the limit refuses, and the refusal rolls that write back whole.
    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(VerificationRefused) as refused,
    ):
        services.verification_submit_code(verification=sent, code=wrong, ip=None)

    assert refused.value.message.startswith("Too many attempts.")
    assert refused.value.retry_after >= 1
    assert callbacks == []  # no check queued, nothing pushed
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    assert sent.events.count() == events


def test_entering_number_after_number_is_limited(user, settings):
    settings.TWO_FACTOR_RATE_LIMITS = {
        **settings.TWO_FACTOR_RATE_LIMITS,
        "number_per_user": (2, 600),
    }
    services.number_accept(user=user, raw_number="+33 6 12 34 56 78")
    with pytest.raises(VerificationRefused):
        services.number_accept(user=user, raw_number="not a number")

    with pytest.raises(VerificationRefused) as refused:
        services.number_accept(user=user, raw_number="+49 151 12345678")

    _assert_limited(refused.value)


def test_a_shared_address_full_of_new_accounts_does_not_lock_out_a_verified_voter(
    user, make_user, settings
):
    settings.TWO_FACTOR_RATE_LIMITS = {**settings.TWO_FACTOR_RATE_LIMITS, "start_per_ip": (2, 3600)}
    office = "192.0.2.44"
    for index in range(2):
        newcomer = make_user(f"new{index}")
        PhoneNumber.objects.create(user=newcomer, number=f"+4479113{index:05d}")
        _start(newcomer, f"k{index}", office)
    late = make_user("late")
    PhoneNumber.objects.create(user=late, number="+447911399999")
    with pytest.raises(VerificationRefused):
        _start(late, "k-late", office)

    PhoneNumber.objects.create(user=user, number=NUMBER, verified_at=timezone.now())
    assert _start(user, "k-voter", office).status == Status.QUEUED
