"""The one error hierarchy every verification gateway raises.

``message`` is what a person reads: a sentence that says what to do next.
``detail`` is the provider's technical reason, for logs and the audit trail only.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class GatewayError(Exception):
    default_message = "Something went wrong while checking your phone. Please try again."

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class TransientGatewayError(GatewayError):
    """Timeouts, connection errors, 5xx and 429: the caller retries with backoff."""

    default_message = "We couldn't reach the SMS provider. We'll keep trying."


class PermanentGatewayError(GatewayError):
    """Retrying cannot help: the caller fails the verification with ``message``."""

    default_message = "We couldn't send a code to this number. Please try again later."


class InvalidNumber(PermanentGatewayError):
    default_message = (
        "We can't send a code to that number. "
        "Check it is a mobile number with its country code and try again."
    )


class GatewayMisconfigured(PermanentGatewayError):
    default_message = (
        "Phone verification is unavailable because of a problem on our side. "
        "Please try again later."
    )


class InsufficientBalance(PermanentGatewayError):
    # Deliberately vague towards the voter: the balance is an operator's concern.
    default_message = "Phone verification is temporarily unavailable. Please try again later."


class Blocked(PermanentGatewayError):
    default_message = (
        "Our SMS provider's fraud protection blocked this request. "
        "Please try another number or contact support."
    )


class InvalidCode(GatewayError):
    default_message = "That code doesn't match. Check the SMS and try again."


class TooManyAttempts(GatewayError):
    default_message = "That code was wrong too many times. Start again to get a new code."


class RequestNotFound(GatewayError):
    default_message = "This code has expired or was already used. Start again to get a new code."


class ConcurrentRequest(GatewayError):
    """A verification to the same number is still live at the provider."""

    default_message = (
        "A code is already on its way to this number. "
        "Use that code, or wait a few minutes before asking for a new one."
    )

    def __init__(
        self,
        message: str | None = None,
        *,
        live_request_id: str | None = None,
        detail: str = "",
    ) -> None:
        super().__init__(message, detail=detail)
        self.live_request_id = live_request_id


class NoMoreChannels(GatewayError):
    default_message = "We've already tried every way to reach you. Start again to get a new code."


class StepTakesNoCode(GatewayError):
    default_message = "This step doesn't take a code. Wait for the SMS or call, then try again."


# --- translating Verify's HTTP answers ------------------------------------------------
# One table for every gateway: the Vonage gateway feeds it real HTTP responses, the
# sandbox feeds it the verify_rules engine's violations, so both fail the same way.

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
        if operation == "start":
            live = problem.get("request_id")
            return ConcurrentRequest(
                live_request_id=live if isinstance(live, str) else None, detail=detail
            )
        if operation == "next_channel":
            return NoMoreChannels(detail=detail)
        if operation == "check":
            return StepTakesNoCode(detail=detail)
    if status == 422:
        names = invalid_parameter_names(problem)
        if any(_is_number_parameter(name) for name in names):
            return InvalidNumber(detail=f"{detail} ({', '.join(names)})")
        return GatewayMisconfigured(detail=f"{detail} ({', '.join(names)})")
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
