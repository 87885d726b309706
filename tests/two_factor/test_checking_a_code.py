"""Submitting and checking a code (services.verification_submit_code and
verification_check): right, wrong, malformed, late and redelivered codes."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.two_factor.verifications import (
    latest_code,
    submit_code,
    wrong_code_for,
)
from two_factor import services
from two_factor.gateways import (
    GatewayMisconfigured,
    InvalidCode,
    TransientGatewayError,
)
from two_factor.gateways.sandbox import SandboxGateway
from two_factor.models import Status, Verification
from two_factor.services import VerificationRefused

pytestmark = pytest.mark.usefixtures("eager_tasks")


def _events(verification: Verification) -> list[tuple[str, str, str]]:
    return [(e.from_status, e.to_status, e.reason) for e in verification.events.all()]


def test_a_code_for_the_row_as_read_is_queued_without_reading_it_again(
    sent, django_capture_on_commit_callbacks
):
    """The usual submission: the page's copy is the stored row, so the write of
    `checking` and its audit event are one statement (PostgreSQL) that takes the row's
    lock itself, with no locked read before it."""
    if connection.vendor != "postgresql":
        pytest.skip("one-statement transitions are PostgreSQL's; SQLite reads the row locked")
    events = sent.events.count()

    with (
        CaptureQueriesContext(connection) as queries,
        django_capture_on_commit_callbacks() as callbacks,
    ):
        services.verification_submit_code(verification=sent, code=latest_code(), ip="192.0.2.1")

    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if "FOR UPDATE" in sql]
    assert len([sql for sql in statements if sql.startswith("WITH written AS (UPDATE")]) == 1
    assert sent.status == Status.CHECKING
    stored = Verification.objects.get(pk=sent.pk)
    assert stored.status == Status.CHECKING
    assert stored.events.count() == events + 1
    assert callbacks  # the check is queued once it commits


def test_a_code_for_a_stale_copy_is_judged_on_the_row_as_stored(
    sent, django_capture_on_commit_callbacks
):
    """Another tab's submission moved the row on since this page read it: nothing is
    written from the stale copy, and the refusal names what the row holds."""
    Verification.objects.filter(pk=sent.pk).update(status=Status.CHECKING)
    events = sent.events.count()

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(VerificationRefused, match="still checking"),
    ):
        services.verification_submit_code(verification=sent, code=latest_code(), ip="192.0.2.1")

    assert callbacks == []
    assert sent.events.count() == events


def test_a_wrong_code_goes_back_to_sent_and_counts(sent, django_capture_on_commit_callbacks):
    verification = submit_code(
        sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks
    )

    assert verification.status == Status.SENT
    assert verification.wrong_codes == 1
    assert verification.wrong_codes_left == 2
    assert [s for _, s, _ in _events(verification)][-2:] == [Status.CHECKING, Status.SENT]


def test_a_wrong_code_during_the_call_goes_back_to_the_call(
    sent, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=sent, channel="voice")
    sent.refresh_from_db()
    assert (sent.status, sent.channel) == (Status.SENT, "voice")

    verification = submit_code(
        sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks
    )

    assert (verification.status, verification.channel) == (Status.SENT, "voice")
    assert verification.wrong_codes == 1


def test_the_third_wrong_code_fails_the_verification(sent, django_capture_on_commit_callbacks):
    wrong = wrong_code_for(latest_code())
    for _ in range(3):
        verification = submit_code(sent, wrong, django_capture_on_commit_callbacks)

    assert verification.status == Status.FAILED
    assert verification.wrong_codes == 3
    assert verification.failure_reason == "That code was wrong too many times. Ask for a new code."


def test_the_local_count_ends_it_even_when_the_provider_would_allow_more(
    sent, django_capture_on_commit_callbacks
):
    # Two wrong codes counted here that the provider never saw (e.g. a previous request).
    Verification.objects.filter(pk=sent.pk).update(wrong_codes=2)
    sent.refresh_from_db()

    verification = submit_code(
        sent, wrong_code_for(latest_code()), django_capture_on_commit_callbacks
    )

    assert verification.status == Status.FAILED
    assert verification.wrong_codes == 3
    assert verification.events.last().reason == "too many wrong codes (local count)"
    # The provider's request is cancelled too, so its code can't be used any more.
    assert SandboxGateway().emulator.status(verification.request_id) is None


def test_the_right_code_verifies_the_verification_and_the_number(
    sent, phone, django_capture_on_commit_callbacks
):
    verification = submit_code(sent, latest_code(), django_capture_on_commit_callbacks)

    assert verification.status == Status.VERIFIED
    assert verification.verified_at is not None
    phone.refresh_from_db()
    assert phone.verified_at is not None


def test_a_code_for_an_expired_request_expires_the_verification(
    sent, django_capture_on_commit_callbacks
):
    code = latest_code()
    SandboxGateway().cancel(request_id=sent.request_id)  # gone at the provider

    verification = submit_code(sent, code, django_capture_on_commit_callbacks)

    assert verification.status == Status.EXPIRED
    assert verification.failure_reason == "This code has expired. Ask for a new code."


def test_a_check_redelivered_after_it_settled_changes_nothing(
    sent, django_capture_on_commit_callbacks
):
    verification = submit_code(sent, latest_code(), django_capture_on_commit_callbacks)
    events = verification.events.count()

    services.verification_check(verification_id=verification.pk, code="000000")

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert verification.events.count() == events


def test_a_permanent_error_on_check_fails_with_its_sentence(
    phone, make_verification, failing_gateway
):
    failing_gateway(GatewayMisconfigured(detail="401"))
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms")

    services.verification_check(verification_id=verification.pk, code="123456")

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason == GatewayMisconfigured.default_message


def test_a_wrong_code_from_any_gateway_counts_locally(phone, make_verification, failing_gateway):
    gateway = failing_gateway(InvalidCode())
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms", wrong_codes=1)

    services.verification_check(verification_id=verification.pk, code="123456")

    verification.refresh_from_db()
    assert (verification.status, verification.wrong_codes) == (Status.SENT, 2)
    assert gateway.calls == ["check"]


def test_giving_up_on_a_check_lets_the_person_try_again(phone, make_verification):
    verification = make_verification(Status.CHECKING, request_id="r", channel="voice")

    services.verification_check_gave_up(
        verification_id=verification.pk, error=TransientGatewayError()
    )

    verification.refresh_from_db()
    assert (verification.status, verification.channel) == (Status.SENT, "voice")


@pytest.mark.parametrize(
    "code",
    [
        "",
        "   ",
        "abc",
        "12345",
        "1234567",
        "12345a",
        "١٢٣٤٥٦",
        "１２３４５６",
        "12.345",
        "<script>",
    ],
)
def test_a_code_of_the_wrong_shape_is_refused_with_the_sentence(sent, code):
    with pytest.raises(VerificationRefused) as refused:
        services.verification_submit_code(verification=sent, code=code, ip=None)

    assert refused.value.message == "Enter the 6-digit code we sent you."
    sent.refresh_from_db()
    assert sent.status == Status.SENT
    assert sent.wrong_codes == 0


def test_the_sentence_follows_the_configured_code_length(sent, settings):
    settings.TWO_FACTOR_CODE_LENGTH = 8

    with pytest.raises(VerificationRefused, match="Enter the 8-digit code"):
        services.verification_submit_code(verification=sent, code="123456", ip=None)


@pytest.mark.parametrize("template", ["{} {}", " {}-{} ", "{}\t{}", "{} - {}"])
def test_spaces_and_dashes_in_a_code_are_ignored(
    sent, django_capture_on_commit_callbacks, template
):
    code = latest_code()

    verification = submit_code(
        sent, template.format(code[:3], code[3:]), django_capture_on_commit_callbacks
    )

    assert verification.status == Status.VERIFIED


def test_a_code_is_not_taken_while_the_last_one_is_being_checked(phone, make_verification):
    verification = make_verification(Status.CHECKING, request_id="r", channel="sms")

    with pytest.raises(VerificationRefused, match="still checking your last code"):
        services.verification_submit_code(verification=verification, code="123456", ip=None)


@pytest.mark.parametrize(
    ("status", "sentence"),
    [
        (Status.QUEUED, "Your code hasn't been sent yet."),
        (Status.SENDING, "Your code hasn't been sent yet."),
        (Status.VERIFIED, "This number is already verified."),
        (Status.FAILED, "This code request has ended. Ask for a new code."),
        (Status.CANCELLED, "This code request has ended. Ask for a new code."),
    ],
)
def test_a_code_is_refused_when_the_verification_takes_none(
    phone, make_verification, status, sentence
):
    verification = make_verification(status)

    with pytest.raises(VerificationRefused) as refused:
        services.verification_submit_code(verification=verification, code="123456", ip=None)

    assert refused.value.message.startswith(sentence)
    verification.refresh_from_db()
    assert verification.status == status
