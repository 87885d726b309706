"""Celery tasks for phone verification: delivery concerns only (retries, backoff, limits).

Each task calls a two_factor service. Provider errors marked transient and unexpected
errors (our own database included) are retried with exponential backoff and full
jitter, every countdown well below the broker's visibility timeout; each retry is also
written to the verification's deadline, so a retry that a broker restart loses is
re-driven by the reconciler (`reconcile`, run by Celery beat). When retries run out,
the service records why and the voter sees it. Services are idempotent, so a
redelivery (acks_late) never sends a second SMS.

Time limits come from the CELERY_TASK_TIME_LIMIT / CELERY_TASK_SOFT_TIME_LIMIT settings
(docs/ARCHITECTURE.md, "Deadlines and the reconciler").

Each task's name is declared once, in its `@shared_task(name=...)`. A task that services
enqueue registers itself with `@performs(...)` for the operation it carries out
(two_factor.services.delivery says why); the others are Celery beat's, whose schedule
(settings) names them, and tests/two_factor/test_tasks.py proves every such name is
registered.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from typing import Any
from uuid import UUID

from celery import Task, shared_task
from celery.exceptions import Retry
from django.conf import settings
from django.db import close_old_connections, connection
from django.utils import translation

from two_factor import services
from two_factor.gateways.errors import PermanentGatewayError
from two_factor.services.delivery import performs

logger = logging.getLogger(__name__)

MAX_RETRIES = 5


def retry_countdown(retries: int) -> float:
    """Full-jitter exponential backoff, capped below the broker's visibility timeout."""
    cap = min(settings.TASK_RETRY_MAX_DELAY, settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 4)
    ceiling = min(cap, settings.TASK_RETRY_BASE_DELAY * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


def _deliver(
    task: Task,
    work: Callable[[], object],
    *,
    give_up: Callable[..., None] | None = None,
    verification_id: str | None = None,
) -> None:
    """Run `work`; retry what may pass (transient provider errors, a database that is
    down or slow, a soft time limit), give up cleanly when retries run out.

    The work runs in the default language whichever thread runs it (an eager task runs in
    the request's): a sentence it stores stays in English, the catalogues' source, and is
    translated for whoever reads it; the voter's SMS speaks `Verification.locale`, and
    live pushes are rendered per language (two_factor.live)."""
    try:
        with translation.override(settings.LANGUAGE_CODE):
            work()
    except (Retry, PermanentGatewayError):
        raise  # permanent errors are settled by the services; Retry is Celery's own
    except Exception as error:
        # TransientGatewayError, OperationalError, SoftTimeLimitExceeded, a bug: never
        # a silent stop.
        if not connection.in_atomic_block:  # (eager tasks inside a test's transaction)
            close_old_connections()  # a broken connection must not poison the retry
        if task.request.retries < (task.max_retries or 0):
            countdown = retry_countdown(task.request.retries)
            logger.warning(
                "%s for %s failed (%s); retry %d in %.1fs",
                task.name,
                verification_id or "-",
                error,
                task.request.retries + 1,
                countdown,
            )
            if verification_id is not None:
                _record_retry(verification_id, countdown)
            raise task.retry(exc=error, countdown=countdown) from None
        logger.error("%s for %s gave up: %s", task.name, verification_id or "-", error)
        if give_up is not None:
            try:
                if verification_id is None:
                    give_up(error)
                else:
                    give_up(verification_id=verification_id, error=error)
            except Exception:
                # The row keeps its deadline: the reconciler settles it once it can.
                logger.exception("Could not record the give-up of %s", verification_id)


def _record_retry(verification_id: str, countdown: float) -> None:
    try:
        services.verification_retry_at(verification_id=UUID(verification_id), seconds=countdown)
    except Exception:
        # The database may be what failed; the deadline already set still holds.
        logger.warning("Could not record the retry time of %s", verification_id)


TASK_OPTIONS: dict[str, Any] = {"bind": True, "acks_late": True, "max_retries": MAX_RETRIES}


@performs("send")
@shared_task(name="two_factor.send_code", **TASK_OPTIONS)
def send_code(self: Task, verification_id: str, cancel_first: list[str] | None = None) -> None:
    _deliver(
        self,
        lambda: services.verification_send(
            verification_id=UUID(verification_id),
            delivery=self.request.id or "eager",
            cancel_first=cancel_first or (),
        ),
        give_up=services.verification_send_gave_up,
        verification_id=verification_id,
    )


# What a check task's message prints in place of the code.
CODE_MASK = "••••••"


class _CodeTask(Task):
    """A task whose second argument is a code the voter typed.

    The message carries it in its body (the task needs it), but never in its printable
    ``argsrepr`` header, which the task events, Flower and ``celery inspect`` show to
    whoever operates the queue: there the code is masked, on the first send and on every
    retry (a retry re-sends through ``apply_async``)."""

    def apply_async(
        self,
        args: tuple[Any, ...] | None = None,
        kwargs: dict[str, Any] | None = None,
        *more: Any,
        **options: Any,
    ) -> Any:
        if args and len(args) > 1 and "argsrepr" not in options:
            options["argsrepr"] = repr((args[0], CODE_MASK, *args[2:]))
        if kwargs and "code" in kwargs and "kwargsrepr" not in options:
            options["kwargsrepr"] = repr({**kwargs, "code": CODE_MASK})
        return super().apply_async(args, kwargs, *more, **options)


@performs("check")
@shared_task(name="two_factor.check_code", base=_CodeTask, **TASK_OPTIONS)
def check_code(self: Task, verification_id: str, code: str) -> None:
    _deliver(
        self,
        lambda: services.verification_check(verification_id=UUID(verification_id), code=code),
        give_up=services.verification_check_gave_up,
        verification_id=verification_id,
    )


@performs("next_channel")
@shared_task(name="two_factor.next_channel", **TASK_OPTIONS)
def next_channel(self: Task, verification_id: str, channel: str | None = None) -> None:
    # `channel` None: the next step (messages enqueued before a channel was named).
    _deliver(
        self,
        lambda: services.verification_next_channel(
            verification_id=UUID(verification_id),
            reason=f"you asked for {channel or 'the next channel'}",
            channel=channel,
        ),
        give_up=services.verification_next_channel_gave_up,
        verification_id=verification_id,
    )


@performs("cancel")
@shared_task(name="two_factor.cancel_request", **TASK_OPTIONS)
def cancel_request(self: Task, request_id: str) -> None:
    _deliver(
        self,
        lambda: services.verification_provider_cancel(request_id=request_id),
        give_up=lambda error: services.verification_provider_cancel_gave_up(
            request_id=request_id, error=error
        ),
    )


@shared_task(name="two_factor.reconcile", bind=True, acks_late=True, ignore_result=True)
def reconcile(self: Task) -> int:
    """The periodic sweep (see services.verification_reconcile)."""
    return services.verification_reconcile()
