"""Phone verification gateways: one interface, one error hierarchy, chosen by settings."""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

from .base import GatewayConfig, VerifyGateway
from .errors import (
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

GATEWAYS = ("sandbox", "vonage")


def get_gateway() -> VerifyGateway:
    """A new gateway for ``settings.TWO_FACTOR_GATEWAY``. Gateways are cheap and hold
    no shared client: make one per task or request, never share one across threads.

    Its provider calls are timed, counted and logged (two_factor.telemetry)."""
    from two_factor.telemetry import instrumented

    return instrumented(_new_gateway())


def _new_gateway() -> VerifyGateway:
    from django.conf import settings

    name = getattr(settings, "TWO_FACTOR_GATEWAY", "sandbox")
    config = gateway_config()
    if name == "sandbox":
        from .sandbox import SandboxGateway

        max_wrong_codes = getattr(settings, "TWO_FACTOR_MAX_WRONG_CODES", 3)
        return SandboxGateway(config, max_wrong_codes=int(max_wrong_codes))
    if name == "vonage":
        # Imported here: the SDK pulls in every Vonage API package.
        from .vonage import VonageGateway

        return VonageGateway(
            config,
            api_key=getattr(settings, "VONAGE_API_KEY", None) or None,
            api_secret=getattr(settings, "VONAGE_API_SECRET", None) or None,
            application_id=getattr(settings, "VONAGE_APPLICATION_ID", None) or None,
            private_key=getattr(settings, "VONAGE_PRIVATE_KEY", None) or None,
            api_host=getattr(settings, "VONAGE_API_HOST", None) or "api.nexmo.com",
        )
    raise ImproperlyConfigured(
        f"TWO_FACTOR_GATEWAY must be one of {', '.join(GATEWAYS)}, got {name!r}"
    )


def gateway_config() -> GatewayConfig:
    from django.conf import settings

    defaults = GatewayConfig()
    try:
        return GatewayConfig(
            brand=str(getattr(settings, "TWO_FACTOR_BRAND", defaults.brand)),
            code_length=int(getattr(settings, "TWO_FACTOR_CODE_LENGTH", defaults.code_length)),
            channel_timeout=int(
                getattr(settings, "TWO_FACTOR_CHANNEL_TIMEOUT", defaults.channel_timeout)
            ),
            request_timeout=float(getattr(settings, "VONAGE_TIMEOUT", defaults.request_timeout)),
        )
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"Invalid two-factor gateway setting: {exc}") from exc


__all__ = [
    "Blocked",
    "ConcurrentRequest",
    "GatewayConfig",
    "GatewayError",
    "GatewayMisconfigured",
    "InsufficientBalance",
    "InvalidCode",
    "InvalidNumber",
    "NoMoreChannels",
    "PermanentGatewayError",
    "RequestNotFound",
    "StepTakesNoCode",
    "TooManyAttempts",
    "TransientGatewayError",
    "VerifyGateway",
    "gateway_config",
    "get_gateway",
]
