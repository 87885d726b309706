"""Verify's error answers (status + application/problem+json body) as gateway errors.

One table for both gateways: the Vonage gateway feeds it real HTTP responses, the
sandbox feeds it its emulator's violations, so both fail the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from two_factor.gateways.errors import (
    Blocked,
    ConcurrentRequest,
    GatewayError,
    GatewayMisconfigured,
    InsufficientBalance,
    InvalidCode,
    InvalidNumber,
    NoMoreChannels,
    PermanentGatewayError,
    RequestNotFound,
    StepTakesNoCode,
    TooManyAttempts,
    TransientGatewayError,
)

_BLOCK_WORDS = ("fraud", "blocked")


def error_from_problem(
    status: int, problem: Mapping[str, Any] | None, *, operation: str
) -> GatewayError:
    """The gateway error for a Verify error response.

    ``operation`` is one of "start", "check", "next_channel", "cancel": Verify reuses
    409 with a different meaning for each.
    """
    problem = problem if isinstance(problem, Mapping) else {}
    title = str(problem.get("title") or "")
    text = str(problem.get("detail") or "")
    detail = f"{operation}: HTTP {status} {title}: {text}".strip().rstrip(":")

    if status in (408, 429) or status >= 500:
        return TransientGatewayError(detail=detail)
    if status not in (400, 404, 410) and any(
        word in f"{title} {text}".lower() for word in _BLOCK_WORDS
    ):
        return Blocked(detail=detail)
    if status in (401, 403):
        return GatewayMisconfigured(detail=detail)
    if status == 402:
        return InsufficientBalance(detail=detail)
    if status == 404:
        return RequestNotFound(detail=detail)
    if status == 410:
        return TooManyAttempts(detail=detail)
    if status == 400 and operation == "check":
        return InvalidCode(detail=detail)
    if status == 400:
        return GatewayMisconfigured(detail=detail)
    if status == 409:
        return _conflict(problem, operation=operation, detail=detail)
    if status == 422:
        names = invalid_parameter_names(problem)
        if any(_is_number_parameter(name) for name in names):
            return InvalidNumber(detail=f"{detail} ({', '.join(names)})")
        return GatewayMisconfigured(detail=f"{detail} ({', '.join(names)})")
    return PermanentGatewayError(detail=detail)


def _conflict(problem: Mapping[str, Any], *, operation: str, detail: str) -> GatewayError:
    if operation == "start":
        live = problem.get("request_id")
        return ConcurrentRequest(
            live_request_id=live if isinstance(live, str) else None, detail=detail
        )
    if operation == "next_channel":
        return NoMoreChannels(detail=detail)
    if operation == "check":
        return StepTakesNoCode(detail=detail)
    return PermanentGatewayError(detail=detail)


def invalid_parameter_names(problem: Mapping[str, Any]) -> list[str]:
    """Names in ``invalid_parameters``, which Verify sends as a list of
    ``{"name", "reason"}`` objects and one SDK fixture as a single object or a map."""
    params = problem.get("invalid_parameters")
    if isinstance(params, Mapping):
        params = [params] if "name" in params else [{"name": key} for key in params]
    if not isinstance(params, list):
        return []
    return [str(p["name"]) for p in params if isinstance(p, Mapping) and "name" in p]


def _is_number_parameter(name: str) -> bool:
    # "to", "workflow", "workflow[0].to", "workflow.0.to" all mean the phone number.
    return name == "to" or name.startswith("workflow") or name.endswith(".to")
