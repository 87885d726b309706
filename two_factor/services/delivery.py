"""How services reach the outside: Celery tasks (enqueued after commit, by the operation
they perform), the provider (instrumented), and the database connection a provider
call must not hold."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar, get_args
from uuid import UUID

from django.core.exceptions import ImproperlyConfigured
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


# --- the tasks, registered beside themselves ------------------------------------------------
#
# Services hand work to the queue without importing the task layer above them
# (tests/test_layering.py). So each task declares its name once, in its own
# `@shared_task(name=...)` in tasks/, and registers itself here with `@performs(...)` for
# the operation it carries out; services enqueue an operation and never spell a task's
# name. Chosen over a module of name constants that both would import: beside the tasks,
# that module would be an import of the task layer by every service; here, it would
# declare the names away from their tasks, twice over in effect. The cost: an operation
# can be enqueued only once its task module is imported. `two_factor.apps` imports it at
# start-up in every process, `_task` says so plainly when it was not, and
# tests/two_factor/test_tasks.py proves every operation is performed by a task the Celery
# app has registered under that task's name.

Operation = Literal["send", "check", "next_channel", "cancel"]
OPERATIONS: tuple[Operation, ...] = get_args(Operation)

_TaskT = TypeVar("_TaskT")
_performers: dict[str, Any] = {}


def performs(operation: Operation) -> Callable[[_TaskT], _TaskT]:
    """Register the decorated task as the one that carries out `operation`."""

    def register(task: _TaskT) -> _TaskT:
        if operation in _performers:
            raise ImproperlyConfigured(f"Two tasks perform the {operation!r} operation.")
        _performers[operation] = task
        return task

    return register


def _task(operation: Operation) -> Any:
    try:
        return _performers[operation]
    except KeyError:
        raise ImproperlyConfigured(
            f"No task performs the {operation!r} operation: tasks.verification is not "
            "imported (two_factor.apps imports it when Django starts)."
        ) from None


def _enqueue(operation: Operation, *args: Any) -> None:
    _task(operation).delay(*(str(a) if isinstance(a, UUID) else a for a in args))


def _enqueue_send_as(verification_id: UUID, delivery: str) -> None:
    _task("send").apply_async((str(verification_id),), task_id=delivery or None)


def _enqueue_cancel(verification: Verification) -> None:
    request_id = verification.request_id
    if request_id:
        transaction.on_commit(lambda: _enqueue("cancel", request_id))
