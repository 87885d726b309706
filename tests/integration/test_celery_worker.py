"""A real Celery worker process, real Redis and real PostgreSQL: the production topology.

The test process enqueues through ``pollstr.celery.app`` into a Redis namespace of its
own; a ``celery worker`` subprocess (the compose ``worker`` command) consumes it and
writes to pytest-django's test database, which the tests then read. The sandbox gateway
keeps its state in the shared Redis cache, so fault injection and the inbox cross the
process boundary; the Vonage runs go through the official SDK to a local HTTPS fake.
"""

from __future__ import annotations

import os
import secrets
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from pollstr.celery import app as celery_app
from tasks.verification import send_code
from tests import stack
from tests.conftest import PASSWORD
from tests.fakes.verify_server import FAKE_API_KEY, FAKE_API_SECRET, FakeVerifyServer
from tests.integration.conftest import requires_postgres
from tests.two_factor.verifications import create_verification
from two_factor import services
from two_factor.gateways.errors import InvalidNumber
from two_factor.gateways.sandbox import sandbox_fail_next, sandbox_messages_for
from two_factor.models import PhoneNumber, Status, Verification, VerificationEvent

pytestmark = [pytest.mark.integration, requires_postgres]

SETTLED = {s for s in Status if s not in (Status.QUEUED, Status.SENDING)}
# Each worker has a Redis namespace (broker, cache) of its own: they never share tasks.
SANDBOX_PREFIX = f"{stack.SESSION_PREFIX}-sandbox"
VONAGE_PREFIX = f"{stack.SESSION_PREFIX}-vonage"


# --- the processes ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sandbox_worker(child_env: Callable[..., dict[str, str]]) -> Iterator[stack.Worker]:
    with stack.celery_worker(child_env(SANDBOX_PREFIX), name="sandbox") as worker:
        yield worker


@pytest.fixture(scope="module")
def verify_server() -> Iterator[FakeVerifyServer]:
    with FakeVerifyServer() as server:
        yield server


@pytest.fixture(scope="module")
def vonage_worker(
    child_env: Callable[..., dict[str, str]], verify_server: FakeVerifyServer
) -> Iterator[stack.Worker]:
    loopback = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "localhost,127.0.0.1"]))
    env = child_env(
        VONAGE_PREFIX,
        TWO_FACTOR_GATEWAY="vonage",
        VONAGE_API_HOST=verify_server.host,
        VONAGE_API_KEY=FAKE_API_KEY,
        VONAGE_API_SECRET=FAKE_API_SECRET,
        REQUESTS_CA_BUNDLE=verify_server.ca_bundle_path,
        NO_PROXY=loopback,
        no_proxy=loopback,
    )
    with stack.celery_worker(env, name="vonage") as worker:
        yield worker


@pytest.fixture
def sandbox(
    sandbox_worker: stack.Worker,
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
) -> stack.Worker:
    """The sandbox worker, with this process in its Redis namespace."""
    use_redis_namespace(SANDBOX_PREFIX)
    return sandbox_worker


@pytest.fixture
def vonage(
    vonage_worker: stack.Worker,
    verify_server: FakeVerifyServer,
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
) -> stack.Worker:
    """The worker running the Vonage gateway against a fresh fake Verify server."""
    use_redis_namespace(VONAGE_PREFIX)
    verify_server.reset()
    return vonage_worker


# --- helpers ------------------------------------------------------------------------------


def new_user(username: str) -> AbstractBaseUser:
    return get_user_model().objects.create_user(username=username, password=PASSWORD)


def start_verification(username: str, number: str) -> Verification:
    """What the /2fa/ view does: accept the typed number, queue its verification (and task)."""
    user = new_user(username)
    typed = services.number_accept(user=user, raw_number=number)
    return services.verification_start(
        user=user, session_key=secrets.token_hex(16), ip="127.0.0.1", number=typed
    )


def wait_until_status(
    verification_id: Any, statuses: set[str], worker: stack.Worker, *, timeout: float = 20.0
) -> Verification:
    def reached() -> Verification | None:
        row = Verification.objects.get(pk=verification_id)
        return row if row.status in statuses else None

    try:
        return stack.wait_for(reached, what=f"status in {sorted(statuses)}", timeout=timeout)
    except AssertionError as error:
        row = Verification.objects.get(pk=verification_id)
        raise AssertionError(
            f"{error}\nverification is {row.status!r}, trail: {trail(row)}\n"
            f"worker log tail:\n{worker.process.log_tail()}"
        ) from None


def trail(verification: Verification) -> list[tuple[str, str]]:
    events = VerificationEvent.objects.filter(verification=verification)
    return [(event.from_status, event.to_status) for event in events]


def task_log(worker: stack.Worker, task_id: str) -> list[str]:
    return [line for line in worker.log_text().splitlines() if f"[{task_id}]" in line]


# --- the tests ----------------------------------------------------------------------------


def test_transient_failures_are_retried_by_the_worker_until_the_code_is_sent(
    sandbox: stack.Worker,
) -> None:
    number = "+33612345671"
    # Stored in the shared Redis cache: the worker process consumes these two failures.
    sandbox_fail_next("start", 2)

    queued = start_verification("retried", number)
    verification = wait_until_status(queued.pk, SETTLED, sandbox)

    assert verification.status == Status.SENT
    assert verification.send_attempts == 3
    assert verification.request_id
    messages = sandbox_messages_for(number)
    assert len(messages) == 1
    assert messages[0]["request_id"] == verification.request_id
    assert trail(verification) == [("", "queued"), ("queued", "sending"), ("sending", "sent")]
    # One delivery (its task id is the send claim) retried twice, then succeeded.
    lines = task_log(sandbox, verification.send_claim)
    assert sum("retry: Retry in" in line for line in lines) == 2, lines
    assert any("succeeded" in line for line in lines), lines


def test_a_duplicated_send_task_sends_exactly_one_sms(sandbox: stack.Worker) -> None:
    number = "+33612345672"
    user = new_user("duplicated")
    verification = create_verification(user=user, number=number)
    # Two deliveries of the same send, as a broker redelivery or a double enqueue makes;
    # the worker runs two processes, so they may well run at the same moment.
    task_ids = [f"duplicate-{uuid.uuid4()}", f"duplicate-{uuid.uuid4()}"]
    for task_id in task_ids:
        send_code.apply_async((str(verification.pk),), task_id=task_id)

    for task_id in task_ids:
        sandbox.wait_for_log(f"two_factor.send_code[{task_id}] succeeded")
    verification.refresh_from_db()

    assert verification.status == Status.SENT
    assert verification.send_claim in task_ids
    assert verification.send_attempts == 1
    assert len(sandbox_messages_for(number)) == 1
    assert trail(verification) == [("", "queued"), ("queued", "sending"), ("sending", "sent")]


def test_the_whole_flow_from_number_to_a_verified_session(
    sandbox: stack.Worker, make_question: Callable[..., Any]
) -> None:
    number = "+33612345673"
    new_user("flow")
    question = make_question()
    poll = f"/polls/{question.pk}/"
    client = Client()

    response = client.post("/accounts/login/", {"username": "flow", "password": PASSWORD})
    assert response.status_code == 302
    response = client.get(poll)
    assert response.status_code == 302
    start_url = response["Location"]
    assert start_url.startswith("/2fa/?next=")

    response = client.post(start_url, {"number": "+33 6 12 34 56 73"})
    assert response.status_code == 302, response.content.decode()[:2000]
    verification = Verification.objects.get(user__username="flow")
    assert response["Location"] == f"/2fa/v/{verification.pk}/"

    verification = wait_until_status(verification.pk, SETTLED, sandbox)
    assert verification.status == Status.SENT
    (message,) = sandbox_messages_for(number)  # read from the shared inbox

    response = client.post(f"/2fa/v/{verification.pk}/code/", {"code": message["code"]})
    assert response.status_code == 302
    verification = wait_until_status(verification.pk, {Status.VERIFIED, Status.FAILED}, sandbox)
    assert verification.status == Status.VERIFIED

    response = client.get(f"/2fa/v/{verification.pk}/complete/")
    assert response.status_code == 302
    assert response["Location"] == poll
    assert client.get(poll).status_code == 200
    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED
    assert PhoneNumber.objects.get(user__username="flow").verified_at is not None
    assert trail(verification) == [
        ("", "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
        ("sent", "checking"),
        ("checking", "verified"),
        ("verified", "consumed"),
    ]


def test_the_worker_is_a_separate_process_that_received_the_tasks(
    sandbox: stack.Worker,
) -> None:
    queued = start_verification("separate", "+33612345674")
    verification = wait_until_status(queued.pk, SETTLED, sandbox)

    replies = celery_app.control.inspect(destination=[sandbox.nodename], timeout=5).stats()
    assert replies, f"no stats from {sandbox.nodename}"
    worker_pid = replies[sandbox.nodename]["pid"]
    assert worker_pid == sandbox.pid
    assert worker_pid != os.getpid()
    log = sandbox.log_text()
    assert f"Task two_factor.send_code[{verification.send_claim}] received" in log
    assert "two_factor.check_code" in log  # the registered tasks the worker announced


def test_a_number_the_provider_refuses_fails_at_once_with_a_reason(
    vonage: stack.Worker, verify_server: FakeVerifyServer
) -> None:
    number = "+33612345675"
    verify_server.invalid_numbers.add(number.removeprefix("+"))

    queued = start_verification("refused", number)
    verification = wait_until_status(queued.pk, SETTLED, vonage)

    assert verification.status == Status.FAILED
    assert verification.failure_reason == InvalidNumber.default_message
    assert verification.send_attempts == 1
    assert len(verify_server.requests_for("start")) == 1  # permanent: never retried
    assert verify_server.messages == []
    assert trail(verification) == [("", "queued"), ("queued", "sending"), ("sending", "failed")]


def test_provider_server_errors_are_retried_through_the_sdk_until_sent(
    vonage: stack.Worker, verify_server: FakeVerifyServer
) -> None:
    number = "+33612345676"
    verify_server.fail_next("start", 500, times=2)

    queued = start_verification("server-errors", number)
    verification = wait_until_status(queued.pk, SETTLED, vonage)

    assert verification.status == Status.SENT
    assert verification.send_attempts == 3
    starts = verify_server.requests_for("start")
    assert len(starts) == 3
    assert all(request.headers["Authorization"].startswith("Basic ") for request in starts)
    assert [m["to"] for m in verify_server.messages] == [number.removeprefix("+")]
    assert verify_server.messages[0]["request_id"] == verification.request_id
    assert trail(verification) == [("", "queued"), ("queued", "sending"), ("sending", "sent")]
