"""The one interface every verification gateway implements, and its configuration."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

# Verify v2 rejects these in `brand`; the Python SDK caps it at 16 characters.
_BRAND_FORBIDDEN = re.compile(r"[/{}:$]")
BRAND_MAX_LENGTH = 16
# The SDK caps client_ref at 16 characters (the API allows 40), alphanumeric only.
CLIENT_REF_MAX_LENGTH = 16


@runtime_checkable
class VerifyGateway(Protocol):
    """Start, check, cancel and escalate a phone verification at a provider.

    Every method raises only :mod:`two_factor.gateways.errors`.
    """

    name: str

    def start(self, *, number: str, client_ref: str) -> str:
        """Send a code to ``number`` (E.164 with '+'), SMS then voice; return the
        provider's request id."""
        ...

    def check(self, *, request_id: str, code: str) -> None:
        """Return if ``code`` is right; raise InvalidCode, TooManyAttempts, ... if not."""
        ...

    def cancel(self, *, request_id: str) -> None: ...

    def next_channel(self, *, request_id: str) -> None:
        """Move to the next step of the workflow now ("call me instead")."""
        ...


@dataclass(frozen=True)
class GatewayConfig:
    brand: str = "Pollstr"
    code_length: int = 6
    channel_timeout: int = 180
    locale: str = "en-us"
    request_timeout: float = 10.0

    def __post_init__(self) -> None:
        if not 1 <= len(self.brand) <= BRAND_MAX_LENGTH or _BRAND_FORBIDDEN.search(self.brand):
            raise ValueError(
                f"brand must be 1-{BRAND_MAX_LENGTH} characters without / {{ }} : $, "
                f"got {self.brand!r}"
            )
        if not 4 <= self.code_length <= 10:
            raise ValueError(f"code_length must be 4..10, got {self.code_length}")
        if not 15 <= self.channel_timeout <= 900:
            raise ValueError(f"channel_timeout must be 15..900 seconds, got {self.channel_timeout}")
        if not self.request_timeout > 0:
            raise ValueError(f"request_timeout must be positive, got {self.request_timeout}")


def provider_number(number: str) -> str:
    """E.164 as Verify wants it: digits only, no leading '+'. Validity is the provider's
    call (the SDK and the sandbox refuse malformed numbers)."""
    return number.strip().removeprefix("+")


def provider_client_ref(client_ref: str) -> str:
    """Derive the provider's client_ref from ours, deterministically.

    Our client_ref is a UUID hex (32 chars); the SDK accepts at most 16 alphanumeric
    characters, so we send the first 16 alphanumerics. Callbacks are matched on
    ``request_id``; the client_ref is a cross-check, a prefix of our id.
    """
    alphanumeric = re.sub(r"[^A-Za-z0-9]", "", client_ref)
    return alphanumeric[:CLIENT_REF_MAX_LENGTH]
