"""The one error hierarchy every verification gateway raises.

``message`` is what a person reads: a sentence that says what to do next, in English
(stored so, and translated when shown: the catalogues under locale/ hold its msgid).
``detail`` is the provider's technical reason, for logs and the audit trail only.
Each gateway translates its provider's answers into these (Vonage's:
``gateways.vonage.problems``).
"""

from __future__ import annotations

from django.utils.translation import gettext_noop


class GatewayError(Exception):
    default_message = gettext_noop(
        "Something went wrong while checking your phone. Please try again."
    )

    def __init__(self, message: str | None = None, *, detail: str = "") -> None:
        self.message = message or self.default_message
        self.detail = detail
        super().__init__(self.message)

    def __str__(self) -> str:
        return self.message


class TransientGatewayError(GatewayError):
    """Timeouts, connection errors, 5xx and 429: the caller retries with backoff."""

    default_message = gettext_noop(
        "We couldn't reach our verification provider. We'll keep trying."
    )


class PermanentGatewayError(GatewayError):
    """Retrying cannot help: the caller fails the verification with ``message``."""

    default_message = gettext_noop(
        "We couldn't send a code to this number. Please try again later."
    )


class InvalidNumber(PermanentGatewayError):
    default_message = gettext_noop(
        "We can't send a code to that number. "
        "Check it is a mobile number with its country code and try again."
    )


class GatewayMisconfigured(PermanentGatewayError):
    default_message = gettext_noop(
        "Phone verification is unavailable because of a problem on our side. "
        "Please try again later."
    )


class InsufficientBalance(PermanentGatewayError):
    # Deliberately vague towards the voter: the balance is an operator's concern.
    default_message = gettext_noop(
        "Phone verification is temporarily unavailable. Please try again later."
    )


class Blocked(PermanentGatewayError):
    default_message = gettext_noop(
        "Our verification provider's fraud protection blocked this request. "
        "Please try another number or contact support."
    )


class InvalidCode(GatewayError):
    default_message = gettext_noop(
        "That code doesn't match. Check the code we sent you and try again."
    )


class TooManyAttempts(GatewayError):
    default_message = gettext_noop(
        "That code was wrong too many times. Start again to get a new code."
    )


class RequestNotFound(GatewayError):
    default_message = gettext_noop(
        "This code has expired or was already used. Start again to get a new code."
    )


class ConcurrentRequest(GatewayError):
    """A verification to the same number is still live at the provider."""

    default_message = gettext_noop(
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
    default_message = gettext_noop(
        "We've already tried every way to reach you. Start again to get a new code."
    )


class StepTakesNoCode(GatewayError):
    default_message = gettext_noop(
        "This step doesn't take a code. Wait for the SMS or call, then try again."
    )
