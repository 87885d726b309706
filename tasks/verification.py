"""Celery tasks for phone verification: delivery concerns only (retries, backoff, limits).

Each task calls a two_factor service. Transient provider errors are retried with
exponential backoff and full jitter, every countdown well below the broker's visibility
timeout; when retries run out, the service records why. Services are idempotent, so a
redelivery (acks_late) never sends a second SMS.
"""

from __future__ import annotations

import random
from typing import Any

from celery import Task, shared_task
from django.conf import settings

from two_factor import services
from two_factor.gateways.errors import TransientGatewayError


def retry_countdown(retries: int) -> float:
    """Full-jitter exponential backoff, capped below the broker's visibility timeout."""
    cap = min(settings.TASK_RETRY_MAX_DELAY, settings.CELERY_BROKER_VISIBILITY_TIMEOUT / 4)
    ceiling = min(cap, settings.TASK_RETRY_BASE_DELAY * (2**retries))
    return random.uniform(ceiling / 2, ceiling)


def _retry_or_give_up(task: Task, error: TransientGatewayError, give_up: Any, **ids: Any) -> None:
    if task.request.retries >= task.max_retries:
        give_up(error=error, **ids)
        return
    raise task.retry(exc=error, countdown=retry_countdown(task.request.retries))


TASK_OPTIONS: dict[str, Any] = {
    "bind": True,
    "acks_late": True,
    "max_retries": 5,
    "soft_time_limit": 30,
    "time_limit": 45,
}


@shared_task(name="two_factor.send_code", **TASK_OPTIONS)
def send_code(self: Task, verification_id: str) -> None:
    try:
        services.verification_send(
            verification_id=verification_id, delivery=self.request.id or "eager"
        )
    except TransientGatewayError as error:
        _retry_or_give_up(
            self, error, services.verification_send_gave_up, verification_id=verification_id
        )


@shared_task(name="two_factor.check_code", **TASK_OPTIONS)
def check_code(self: Task, verification_id: str, code: str) -> None:
    try:
        services.verification_check(verification_id=verification_id, code=code)
    except TransientGatewayError as error:
        _retry_or_give_up(
            self, error, services.verification_check_gave_up, verification_id=verification_id
        )


@shared_task(name="two_factor.next_channel", **TASK_OPTIONS)
def next_channel(self: Task, verification_id: str) -> None:
    try:
        services.verification_next_channel(
            verification_id=verification_id, reason="you asked for a call"
        )
    except TransientGatewayError as error:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=retry_countdown(self.request.retries)) from None


@shared_task(name="two_factor.advance", bind=True, acks_late=True, time_limit=30)
def advance(self: Task, verification_id: str) -> None:
    """Fires at a step's deadline: SMS → voice call → expired."""
    services.verification_advance(verification_id=verification_id)


@shared_task(name="two_factor.cancel_request", **TASK_OPTIONS)
def cancel_request(self: Task, request_id: str) -> None:
    try:
        services.verification_provider_cancel(request_id=request_id)
    except TransientGatewayError as error:
        if self.request.retries < self.max_retries:
            raise self.retry(exc=error, countdown=retry_countdown(self.request.retries)) from None
