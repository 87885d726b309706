"""How services reach the outside: Celery tasks (enqueued after commit), the provider
(instrumented), and the database connection a provider call must not hold."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from django.db import connection, transaction

from two_factor import gateways
from two_factor.models import (
    Verification,
)


def _describe(error: Exception) -> str:
    return getattr(error, "message", "") or f"{type(error).__name__}: {error}"


def _provider() -> gateways.VerifyGateway:
    """The configured gateway, its calls timed, counted and logged (two_factor.telemetry).
    Instrumented here, above the gateways, which import nothing of ours."""
    from two_factor.telemetry import instrumented

    return instrumented(gateways.get_gateway())


def _release_connection() -> None:
    """A provider call waits hundreds of milliseconds: give the database connection back
    to the pool meanwhile, so a worker's many threads hold connections only while they
    use them (docs/ARCHITECTURE.md, "Database connections and failures")."""
    if not connection.in_atomic_block:
        connection.close()


# The tasks (tasks/verification.py) by the names they are registered under: services
# enqueue by name and never import the task layer above them (two_factor.apps loads it).
TASK_NAMES = {
    "send": "two_factor.send_code",
    "check": "two_factor.check_code",
    "next_channel": "two_factor.next_channel",
    "cancel": "two_factor.cancel_request",
}


def _task(operation: str) -> Any:
    from celery import current_app

    return current_app.tasks[TASK_NAMES[operation]]


def _enqueue(operation: str, *args: Any) -> None:
    _task(operation).delay(*(str(a) if isinstance(a, UUID) else a for a in args))


def _enqueue_send_as(verification_id: UUID, delivery: str) -> None:
    _task("send").apply_async((str(verification_id),), task_id=delivery or None)


def _enqueue_cancel(verification: Verification) -> None:
    request_id = verification.request_id
    if request_id:
        transaction.on_commit(lambda: _enqueue("cancel", request_id))
