"""What operators see of verification: one log line and one count per state change,
per provider call and per rate-limit refusal.

Lines carry the request id (pollstr.logs) of the web request that started the work, in
the worker too, so one grep follows a voter. They never carry a code, a session key or
a full phone number: numbers are masked to their last digits.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from pollstr import metrics
from pollstr.logs import log_event
from two_factor.gateways.errors import PermanentGatewayError, TransientGatewayError

logger = logging.getLogger("pollstr.verification")
provider_logger = logging.getLogger("pollstr.provider")
limits_logger = logging.getLogger("pollstr.limits")

OPERATIONS = ("start", "check", "cancel", "next_channel")
_HTTP_STATUS = re.compile(r"\bHTTP (\d{3})\b")


# --- state changes ---------------------------------------------------------------------------


def verification_transitioned(
    sender: Any, *, verification: Any, from_status: str, to_status: str, reason: str, **_: Any
) -> None:
    """Receiver of two_factor.signals.verification_transitioned (after commit, after the
    push to the page was published): the line an operator greps for."""
    channel = verification.channel or ""
    metrics.verification_counted(to_status=to_status, channel=channel, reason=reason)
    log_event(
        logger,
        "verification.transition",
        verification=str(verification.pk),
        user=verification.user_id,
        from_status=from_status or "none",
        to_status=to_status,
        channel=channel or "none",
        number=verification.masked_number,
        reason=reason,
        provider_request=verification.request_id or "none",
    )


# --- rate limits -----------------------------------------------------------------------------


def rate_limit_refused(sender: Any = None, *, name: str, retry_after: int, **_: Any) -> None:
    metrics.RATE_LIMIT_REFUSALS.labels(limit=name).inc()
    log_event(
        limits_logger,
        "rate_limit.refused",
        level=logging.WARNING,
        limit=name,
        retry_after=retry_after,
    )


# --- provider calls --------------------------------------------------------------------------


def instrumented(gateway: Any) -> Any:
    """The same gateway object, its four provider calls timed, counted and logged.

    Wraps the bound methods on the instance, so the object keeps its class (callers and
    tests may check it) and everything else it offers (the sandbox's inbox).
    """
    for operation in OPERATIONS:
        method = getattr(gateway, operation, None)
        if callable(method) and not getattr(method, "_pollstr_instrumented", False):
            setattr(
                gateway,
                operation,
                _timed(str(getattr(gateway, "name", "unknown")), operation, method),
            )
    return gateway


def _timed(gateway_name: str, operation: str, method: Callable[..., Any]) -> Callable[..., Any]:
    @wraps(method)
    def call(*args: Any, **kwargs: Any) -> Any:
        start = time.monotonic()
        try:
            result = method(*args, **kwargs)
        except Exception as error:
            _record(gateway_name, operation, kwargs, time.monotonic() - start, error=error)
            raise
        _record(gateway_name, operation, kwargs, time.monotonic() - start, result=result)
        return result

    call._pollstr_instrumented = True  # type: ignore[attr-defined]
    return call


def _record(
    gateway_name: str,
    operation: str,
    kwargs: dict[str, Any],
    seconds: float,
    *,
    error: Exception | None = None,
    result: Any = None,
) -> None:
    outcome = "ok" if error is None else type(error).__name__
    status = _http_status(error)
    metrics.PROVIDER_REQUEST_SECONDS.labels(
        gateway=gateway_name, operation=operation, outcome=outcome
    ).observe(seconds)
    if error is not None:
        metrics.PROVIDER_ERRORS.labels(
            gateway=gateway_name, operation=operation, error=outcome, status=status
        ).inc()
    provider_request = kwargs.get("request_id") or (result if isinstance(result, str) else "")
    fields: dict[str, Any] = {
        "gateway": gateway_name,
        "operation": operation,
        "outcome": outcome,
        "status": status,
        "latency_ms": round(seconds * 1000, 1),
        "provider_request": provider_request or "none",
    }
    if "number" in kwargs:
        fields["number"] = mask_number(str(kwargs["number"]))
    # The code (kwargs["code"]) is never logged, whatever the outcome.
    # A wrong code is the voter's answer, not a provider problem: only failures warn.
    failed = isinstance(error, TransientGatewayError | PermanentGatewayError)
    level = logging.WARNING if failed else logging.INFO
    log_event(provider_logger, "provider.call", level=level, **fields)


def _http_status(error: Exception | None) -> str:
    if error is None:
        return "ok"
    match = _HTTP_STATUS.search(str(getattr(error, "detail", "") or ""))
    return match.group(1) if match else "none"


def mask_number(number: str) -> str:
    """``+44•••••••3456``: the country code and last four digits, as the pages show."""
    from phonenumber_field.phonenumber import PhoneNumber

    from two_factor.numbers import number_mask

    try:
        return number_mask(PhoneNumber.from_string(number))
    except Exception:
        digits = re.sub(r"\D", "", number)
        return f"•••{digits[-4:]}" if len(digits) > 4 else "•••"


def connect() -> None:
    """Connect the receivers (from two_factor's AppConfig.ready(); idempotent)."""
    from two_factor import signals

    signals.verification_transitioned.connect(
        verification_transitioned, dispatch_uid="pollstr.telemetry.transition"
    )
    refused = getattr(signals, "rate_limit_refused", None)
    if refused is not None:
        refused.connect(rate_limit_refused, dispatch_uid="pollstr.telemetry.rate_limit")
