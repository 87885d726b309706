"""The offline default gateway: the Verify emulator, no network, codes in a dev inbox.

State lives in Django's cache (``TWO_FACTOR_SANDBOX_CACHE``, default "default") so a
Celery worker that starts a verification and a web process that shows the inbox or
checks the code see the same requests. That needs a cache shared between processes
(Redis); locmem only works within one process.

Fault injection, read from settings on every call:

- ``TWO_FACTOR_SANDBOX_LATENCY``: seconds to sleep before each call (default 0).
- ``TWO_FACTOR_SANDBOX_FAILURE_RATE``: share of calls, 0..1, that raise
  TransientGatewayError (default 0).
- :func:`sandbox_fail_next`: the next N calls of one operation raise
  TransientGatewayError, in whichever process makes them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Self

from django.conf import settings
from django.core.cache import caches

from two_factor.gateways.base import (
    GatewayConfig,
    StartedRequest,
    WorkflowStep,
    provider_client_ref,
    provider_number,
    webotp_line,
)
from two_factor.gateways.errors import TransientGatewayError
from two_factor.gateways.vonage.problems import error_from_problem

from .callbacks import callback_send
from .emulator import NEEDS_FROM, VERIFY_WORDING, RuleViolation, VerifyEmulator
from .store import CacheStore, Store, StoreLockTimeout

logger = logging.getLogger("two_factor.sandbox")

OPERATIONS = ("start", "check", "cancel", "next_channel")
INBOX_KEY = "inbox"
INBOX_SIZE = 50
# The sandbox's one SMS template: Verify's wording, then the WebOTP line when the site
# has a host for it.
SMS_TEMPLATE_ID = "00000000-0000-4000-8000-00000000f00d"
_PREFIX = "sandbox:"
SANDBOX_SENDER = "Sandbox"


def sandbox_store() -> CacheStore:
    return CacheStore(_cache_alias(), prefix=_PREFIX)


class SandboxGateway:
    name = "sandbox"

    def __init__(
        self,
        config: GatewayConfig | None = None,
        store: Store | None = None,
        clock: Callable[[], float] = time.time,
        *,
        max_wrong_codes: int = 3,
    ) -> None:
        self.config = config or GatewayConfig()
        self.store: Store = store if store is not None else sandbox_store()
        # Verify's wording in each locale, then the WebOTP line: one fragment per locale,
        # as a Vonage template has.
        webotp = "\n\n" + webotp_line(self.config.webotp_host, "${code}")
        templates = {
            f"{SMS_TEMPLATE_ID}:{locale}": wording + (webotp if self.config.webotp_host else "")
            for locale, wording in VERIFY_WORDING.items()
        }
        templates[SMS_TEMPLATE_ID] = templates[f"{SMS_TEMPLATE_ID}:en-us"]
        self.emulator = VerifyEmulator(
            self.store,
            clock=clock,
            max_wrong_codes=max_wrong_codes,
            on_message=self._deliver,
            # Signed, to our own webhook, like Vonage's status callbacks (off unless
            # configured). The emulator logs a listener's failure instead of raising it.
            on_callback=callback_send,
            templates=templates,
            # A silent-auth step's check URL: the sandbox's own page, which plays the
            # mobile network (docs/ARCHITECTURE.md, "Silent authentication").
            check_url_for=_sandbox_check_url,
        )

    @classmethod
    def from_settings(cls) -> Self:
        return cls(
            GatewayConfig.from_settings(),
            max_wrong_codes=int(settings.TWO_FACTOR_MAX_WRONG_CODES),
        )

    def start(
        self,
        *,
        number: str,
        client_ref: str,
        workflow: Sequence[WorkflowStep],
        locale: str | None = None,
    ) -> StartedRequest:
        self._inject_faults("start")
        with _translated("start"):
            request_id = self.emulator.start(
                to=provider_number(number),
                # Every channel the sandbox sends the same way: to the dev inbox.
                workflow=[_sandbox_step(step) for step in workflow],
                brand=self.config.brand,
                code_length=self.config.code_length,
                channel_timeout=self.config.channel_timeout,
                locale=locale or self.config.locale,
                client_ref=provider_client_ref(client_ref) or None,
                template_id=SMS_TEMPLATE_ID,
            )
            return StartedRequest(request_id, self.emulator.check_url(request_id))

    def silent_auth_complete(self, request_id: str) -> str:
        """The sandbox's mobile network vouches for the number: where the handset is
        redirected, our redirect_url with the request id and the code."""
        with _translated("check"):
            return self.emulator.silent_auth_complete(request_id)

    def silent_auth_fail(self, request_id: str) -> None:
        """The sandbox's mobile network cannot vouch (Wi-Fi, a desktop): the workflow
        moves on to its next step."""
        with _translated("next_channel"):
            self.emulator.silent_auth_fail(request_id)

    def check(self, *, request_id: str, code: str) -> None:
        self._inject_faults("check")
        with _translated("check"):
            self.emulator.check(request_id, code)

    def cancel(self, *, request_id: str) -> None:
        self._inject_faults("cancel")
        with _translated("cancel"):
            self.emulator.cancel(request_id)

    def next_channel(self, *, request_id: str) -> None:
        self._inject_faults("next_channel")
        with _translated("next_channel"):
            self.emulator.next_workflow(request_id)

    def inbox(self, limit: int = 20) -> list[dict[str, Any]]:
        """Messages "sent", newest first. Sweeps first, so a voice step whose time has
        come shows up even if nobody touched its request."""
        self.emulator.sweep()
        return list(self.store.get(INBOX_KEY) or [])[:limit]

    def _deliver(self, message: dict[str, Any]) -> None:
        logger.info(
            "Sandbox %s to +%s: code %s (request %s)",
            message["channel"],
            message["to"],
            message["code"],
            message["request_id"],
        )
        with self.store.lock():
            inbox = self.store.get(INBOX_KEY) or []
            self.store.set(INBOX_KEY, [message, *inbox][:INBOX_SIZE])

    def _inject_faults(self, operation: str) -> None:
        # Ranges are checked once, by settings, at start-up.
        latency = float(settings.TWO_FACTOR_SANDBOX_LATENCY)
        if latency:
            time.sleep(latency)
        if _consume_scripted_failure(operation):
            raise TransientGatewayError(detail=f"{operation}: sandbox_fail_next")
        rate = float(settings.TWO_FACTOR_SANDBOX_FAILURE_RATE)
        if rate and random.random() < rate:
            raise TransientGatewayError(detail=f"{operation}: sandbox failure rate {rate}")


def _sandbox_check_url(request_id: str) -> str:
    from django.urls import reverse

    return reverse("two_factor:sandbox_silent_auth", args=[request_id])


def _sandbox_step(step: WorkflowStep) -> dict[str, Any]:
    """The step as the emulator takes it. A channel Verify sends from an account's
    sender (WhatsApp) goes from the sandbox's own when none is configured: the sandbox
    runs offline, without a WhatsApp Business number."""
    body: dict[str, Any] = {"channel": step.channel}
    body.update({name: value for name, value in step.params.items() if value})
    if step.channel in NEEDS_FROM:
        body.setdefault("from", SANDBOX_SENDER)
    return body


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """The emulator's rule violations become the gateway errors Vonage's answers would."""
    try:
        yield
    except RuleViolation as exc:
        raise error_from_problem(exc.status, exc.problem(), operation=operation) from exc
    except StoreLockTimeout as exc:
        raise TransientGatewayError(detail=f"{operation}: {exc}") from exc


# --- the dev inbox and fault hooks (any process sharing the cache) -----------------------


def sandbox_inbox(limit: int = 20) -> list[dict[str, Any]]:
    """The latest messages the sandbox "sent", newest first."""
    return SandboxGateway().inbox(limit)


def sandbox_inbox_clear() -> None:
    store = sandbox_store()
    with store.lock():
        store.delete(INBOX_KEY)


def sandbox_messages_for(number: str) -> list[dict[str, Any]]:
    """Messages sent to ``number`` (with or without '+'), newest first."""
    to = provider_number(number)
    return [message for message in sandbox_inbox(INBOX_SIZE) if message["to"] == to]


def sandbox_fail_next(operation: str, times: int = 1) -> None:
    """Make the next ``times`` calls of ``operation`` raise TransientGatewayError."""
    if operation not in OPERATIONS:
        raise ValueError(f"operation must be one of {OPERATIONS}, got {operation!r}")
    if times < 0:
        raise ValueError("times must not be negative")
    caches[_cache_alias()].set(_failure_key(operation), times, timeout=3600)


def _consume_scripted_failure(operation: str) -> bool:
    try:
        # decr is atomic on Redis: two workers never consume the same failure.
        left = caches[_cache_alias()].decr(_failure_key(operation))
    except ValueError:  # no counter set
        return False
    return left >= 0


def _failure_key(operation: str) -> str:
    return f"{_PREFIX}fail:{operation}"


def _cache_alias() -> str:
    return str(getattr(settings, "TWO_FACTOR_SANDBOX_CACHE", "default"))


__all__ = [
    "SandboxGateway",
    "sandbox_fail_next",
    "sandbox_inbox",
    "sandbox_inbox_clear",
    "sandbox_messages_for",
    "sandbox_store",
]
