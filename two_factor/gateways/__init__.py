"""Phone verification gateways: one interface, one error hierarchy, one shape of a
workflow step; each provider in its own package (``sandbox``, ``vonage``).

Nothing here imports from the rest of the project: only Django's settings and
utilities, the provider SDK and the standard library.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured
from django.utils.module_loading import import_string

from .base import GatewayConfig, StartedRequest, VerifyGateway, WorkflowStep
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


def get_gateway() -> VerifyGateway:
    """A new gateway of the class ``settings.TWO_FACTOR_GATEWAY_CLASS`` names (settings
    resolve ``TWO_FACTOR_GATEWAY`` into it), built by its ``from_settings()``.

    Gateways are cheap and hold no shared client: make one per task or request, never
    share one across threads.
    """
    from django.conf import settings

    path = settings.TWO_FACTOR_GATEWAY_CLASS
    try:
        gateway_class = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"TWO_FACTOR_GATEWAY_CLASS {path!r} is not an importable class: {exc}"
        ) from exc
    if not callable(getattr(gateway_class, "from_settings", None)):
        raise ImproperlyConfigured(
            f"TWO_FACTOR_GATEWAY_CLASS {path!r} is not a gateway: it has no from_settings()"
        )
    gateway: VerifyGateway = gateway_class.from_settings()
    return gateway


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
    "StartedRequest",
    "StepTakesNoCode",
    "TooManyAttempts",
    "TransientGatewayError",
    "VerifyGateway",
    "WorkflowStep",
    "get_gateway",
]
