"""No verification lost: a worker killed mid-batch, a database error inside a task.

Real processes: `celery worker` (the compose command) and `celery beat` (the reconciler's
schedule) against PostgreSQL and a Redis namespace of this test's own. The broker's
visibility timeout stays at its default (minutes): what settles the killed worker's
verifications within seconds is the reconciler, not a redelivery.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from tests import stack
from tests.integration.conftest import (  # noqa: F401  (fixtures)
    child_env,
    redis_url,
    requires_postgres,
    test_database_url,
    use_redis_namespace,
)
from two_factor import services
from two_factor.gateways.sandbox import sandbox_messages_for
from two_factor.models import PhoneNumber, Status, Verification

pytestmark = [pytest.mark.integration, requires_postgres]

# Short limits so "one sweep after the task's time is up" is seconds, not minutes.
FAST = {
    "CELERY_TASK_SOFT_TIME_LIMIT": "4",
    "CELERY_TASK_TIME_LIMIT": "6",
    "TWO_FACTOR_RECONCILE_INTERVAL": "1",
    "TWO_FACTOR_QUEUED_GRACE": "4",
    "TWO_FACTOR_SANDBOX_LATENCY": "0.3",
}
SETTLED = (Status.SENT, Status.FAILED)


def _numbers(count: int) -> list[str]:
    return [f"+4479112{index:05d}" for index in range(count)]


def _start_batch(count: int) -> list[Verification]:
    verifications = []
    for index, number in enumerate(_numbers(count)):
        user = get_user_model().objects.create_user(f"voter{index}", password="x")
        PhoneNumber.objects.create(user=user, number=number)
        verifications.append(
            services.verification_start(
                user=user, session_key=f"session-{index}", ip=f"198.51.100.{index % 250}"
            )
        )
    return verifications


def _statuses(verifications: list[Verification]) -> Counter[str]:
    ids = [v.pk for v in verifications]
    return Counter(Verification.objects.filter(pk__in=ids).values_list("status", flat=True))


def _wait(predicate: Callable[[], bool], *, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


@contextmanager
def _beat(env: dict[str, str]) -> Iterator[stack.ChildProcess]:
    schedule = os.path.join(tempfile.mkdtemp(prefix="pollstr-beat-"), "schedule")
    argv = [sys.executable, "-m", "celery", "-A", "pollstr", "beat", "--loglevel=INFO"]
    child = stack.ChildProcess("celery-beat", [*argv, f"--schedule={schedule}"], env)
    try:
        child.wait_until(lambda: "beat: Starting" in child.log_text(), what="beat start")
        yield child
    finally:
        child.stop()


@pytest.fixture
def namespace(
    child_env: Callable[..., dict[str, str]],  # noqa: F811
    use_redis_namespace: Callable[[str], None],  # noqa: F811
    transactional_db: None,
    settings: object,
) -> Callable[..., dict[str, str]]:
    """A Redis namespace for this test, shared by the test process and its children."""
    prefix = f"{stack.SESSION_PREFIX}-{os.urandom(3).hex()}"
    use_redis_namespace(prefix)
    settings.TWO_FACTOR_GATEWAY = "sandbox"  # type: ignore[attr-defined]
    return lambda **extra: child_env(prefix, **{**FAST, **extra})


def test_a_worker_killed_mid_batch_loses_nothing_and_sends_no_second_sms(namespace):
    env = namespace()
    with stack.celery_worker(env, concurrency=2, name="doomed") as doomed:
        batch = _start_batch(30)
        _wait(lambda: _statuses(batch)[Status.SENT] >= 4, timeout=30, what="a few sends")
        os.killpg(doomed.pid, signal.SIGKILL)  # the worker and its pool children
        killed_at = time.monotonic()
    stranded = _statuses(batch)
    assert stranded[Status.QUEUED] + stranded[Status.SENDING] > 0, stranded

    with stack.celery_worker(env, concurrency=2, name="survivor"), _beat(env):
        # Time for the lost attempts' deadline (time limit + a sweep) and the backlog.
        _wait(
            lambda: sum(_statuses(batch)[s] for s in SETTLED) == len(batch),
            timeout=45,
            what=f"every verification to settle (now {dict(_statuses(batch))})",
        )
    settled_in = time.monotonic() - killed_at

    rows = Verification.objects.filter(pk__in=[v.pk for v in batch])
    assert all(row.failure_reason for row in rows if row.status == Status.FAILED)
    sms = {number: len(sandbox_messages_for(number)) for number in _numbers(len(batch))}
    assert max(sms.values()) == 1, sms  # nobody got a second SMS
    assert sum(sms.values()) >= rows.filter(status=Status.SENT).count()
    print(f"settled {len(batch)} in {settled_in:.1f}s after the kill: {dict(_statuses(batch))}")


@contextmanager
def _fail_updates_to(status: str, *, times: int) -> Iterator[None]:
    """A trigger in the real database that refuses the next `times` saves of a row
    moving to `status`: what a failover, a deadlock or a full disk looks like to a task."""
    with connection.cursor() as cursor:
        cursor.execute("CREATE SEQUENCE IF NOT EXISTS pollstr_fault_seq")
        cursor.execute("SELECT setval('pollstr_fault_seq', 1, false)")
        cursor.execute(
            f"""
            CREATE OR REPLACE FUNCTION pollstr_fault() RETURNS trigger AS $$
            BEGIN
              IF NEW.status = '{status}' AND nextval('pollstr_fault_seq') <= {times} THEN
                RAISE EXCEPTION 'injected database fault';
              END IF;
              RETURN NEW;
            END $$ LANGUAGE plpgsql
            """
        )
        cursor.execute(
            "CREATE TRIGGER pollstr_fault BEFORE UPDATE ON two_factor_verification "
            "FOR EACH ROW EXECUTE FUNCTION pollstr_fault()"
        )
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TRIGGER IF EXISTS pollstr_fault ON two_factor_verification")
            cursor.execute("DROP FUNCTION IF EXISTS pollstr_fault()")
            cursor.execute("DROP SEQUENCE IF EXISTS pollstr_fault_seq")


def test_a_database_error_inside_a_task_is_retried_without_a_second_sms(namespace):
    with _fail_updates_to(Status.SENT, times=2), stack.celery_worker(namespace()) as worker:
        (verification,) = _start_batch(1)
        _wait(
            lambda: _statuses([verification])[Status.SENT] == 1,
            timeout=30,
            what="the send to succeed after the database errors",
        )
        assert "injected database fault" in worker.log_text()

    verification.refresh_from_db()
    assert verification.send_attempts == 3
    assert len(sandbox_messages_for(_numbers(1)[0])) == 1


def test_a_database_error_that_persists_ends_in_a_failure_the_voter_sees(namespace):
    with _fail_updates_to(Status.SENT, times=1000), stack.celery_worker(namespace()):
        (verification,) = _start_batch(1)
        _wait(
            lambda: _statuses([verification])[Status.FAILED] == 1,
            timeout=30,
            what="the send to give up",
        )

    verification.refresh_from_db()
    assert verification.failure_reason == services.SEND_GAVE_UP
    assert len(sandbox_messages_for(_numbers(1)[0])) == 1
