"""Sending the code (services.verification_send): one SMS per verification whatever
the deliveries, transient errors left to the retry, permanent ones ending it."""

from __future__ import annotations

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from tests.phone_numbers import NUMBER
from tests.two_factor.verifications import default_workflow
from two_factor import services
from two_factor.gateways import (
    Blocked,
    ConcurrentRequest,
    GatewayMisconfigured,
    InsufficientBalance,
    InvalidNumber,
    TransientGatewayError,
)
from two_factor.gateways.sandbox import SandboxGateway, sandbox_fail_next, sandbox_messages_for
from two_factor.models import VERIFICATION_BY_ID, Status, Verification

pytestmark = pytest.mark.usefixtures("eager_tasks")


def test_send_moves_a_queued_verification_to_sent_with_the_provider_id(phone, make_verification):
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.send_claim == "task-1"
    assert verification.send_attempts == 1
    assert verification.request_id == sandbox_messages_for(NUMBER)[0]["request_id"]
    assert verification.sent_at is not None


def test_a_queued_row_is_claimed_by_one_statement_without_a_locked_read(phone, make_verification):
    if connection.vendor != "postgresql":
        pytest.skip("one-statement transitions are PostgreSQL's; SQLite reads the row locked")
    verification = make_verification()

    with CaptureQueriesContext(connection) as queries:
        services.verification_send(verification_id=verification.pk, delivery="task-1")

    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if "FOR UPDATE" in sql]
    # The claim (queued -> sending) and the provider's answer (sending -> sent).
    assert len([sql for sql in statements if sql.startswith("WITH written AS (UPDATE")]) == 2
    verification.refresh_from_db()
    assert (verification.status, verification.send_claim) == (Status.SENT, "task-1")
    assert verification.send_attempts == 1


def test_a_delivery_whose_row_another_claimed_since_it_read_it_sends_nothing(
    phone, make_verification, monkeypatch
):
    """Two deliveries read the queued row; the other claims it between this one's read
    and its write: this one's write matches nothing, and under the lock it finds the
    other's claim."""
    verification = make_verification()
    read = VERIFICATION_BY_ID.get

    def read_then_another_claims(pk):
        row = read(pk)
        Verification.objects.filter(pk=pk).update(
            status=Status.SENDING, send_claim="task-1", send_attempts=1
        )
        return row

    monkeypatch.setattr(VERIFICATION_BY_ID, "get", read_then_another_claims)

    services.verification_send(verification_id=verification.pk, delivery="task-2")

    verification.refresh_from_db()
    assert (verification.status, verification.send_claim) == (Status.SENDING, "task-1")
    assert verification.send_attempts == 1
    assert sandbox_messages_for(NUMBER) == []
    assert verification.events.filter(to_status=Status.SENDING).count() == 0


def test_two_deliveries_with_different_ids_send_one_sms(phone, make_verification):
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")
    services.verification_send(verification_id=verification.pk, delivery="task-2")

    assert len(sandbox_messages_for(NUMBER)) == 1
    verification.refresh_from_db()
    assert verification.send_claim == "task-1"


def test_a_delivery_that_finds_another_claim_on_the_send_sends_nothing(phone, make_verification):
    verification = make_verification(Status.SENDING, send_claim="task-1")

    services.verification_send(verification_id=verification.pk, delivery="task-2")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING
    assert verification.send_attempts == 0
    assert sandbox_messages_for(NUMBER) == []


def test_a_redelivery_after_the_request_id_is_set_sends_nothing(phone, make_verification):
    verification = make_verification()
    services.verification_send(verification_id=verification.pk, delivery="task-1")
    verification.refresh_from_db()
    request_id = verification.request_id

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.request_id == request_id
    assert verification.send_attempts == 1
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_live_request_at_the_provider_is_adopted_not_resent(phone, make_verification):
    verification = make_verification()
    # Our earlier try reached the provider but its answer was lost.
    live_id = SandboxGateway().start(
        number=NUMBER, client_ref=verification.pk.hex, workflow=default_workflow()
    )

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.request_id == live_id
    assert verification.events.last().reason == "adopted the provider's live request"
    assert len(sandbox_messages_for(NUMBER)) == 1


def test_a_conflict_without_the_live_id_is_raised_as_transient(
    phone, make_verification, failing_gateway
):
    failing_gateway(ConcurrentRequest(live_request_id=None))
    verification = make_verification()

    with pytest.raises(TransientGatewayError):
        services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING


def test_a_transient_error_is_raised_for_the_retry_and_the_send_stays_sending(
    phone, make_verification
):
    verification = make_verification()
    sandbox_fail_next("start", 1)

    with pytest.raises(TransientGatewayError):
        services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENDING
    assert verification.send_attempts == 1
    assert sandbox_messages_for(NUMBER) == []

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.SENT
    assert verification.send_attempts == 2
    assert len(sandbox_messages_for(NUMBER)) == 1


@pytest.mark.parametrize(
    "error", [InvalidNumber, GatewayMisconfigured, InsufficientBalance, Blocked]
)
def test_a_permanent_error_fails_the_verification_with_a_readable_reason(
    phone, make_verification, failing_gateway, error
):
    failing_gateway(error(detail="HTTP 4xx from the provider"))
    verification = make_verification()

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason == error.default_message
    assert "HTTP" not in verification.failure_reason
    assert verification.request_id == ""


def test_giving_up_on_a_send_fails_it_with_a_sentence(phone, make_verification):
    verification = make_verification(Status.SENDING, send_claim="task-1")

    services.verification_send_gave_up(
        verification_id=verification.pk, error=TransientGatewayError(detail="timeout")
    )

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason.startswith("We couldn't reach our verification provider")
    assert "gave up" in verification.events.last().reason


def test_a_row_made_without_a_workflow_gets_its_regions_workflow_when_sent(
    phone, make_verification, settings
):
    settings.TWO_FACTOR_WORKFLOW_BY_REGION = {"GB": ("whatsapp", "sms")}
    verification = make_verification(workflow=[], country="GB")

    services.verification_send(verification_id=verification.pk, delivery="task-1")

    verification.refresh_from_db()
    assert verification.workflow == ["whatsapp", "sms"]
    assert (verification.status, verification.channel) == (Status.SENT, "whatsapp")
