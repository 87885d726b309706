"""The one interface every verification gateway implements, its configuration, and the
shape of one workflow step as a gateway receives it.

Which channels exist and in which order a verification tries them is not decided here:
``two_factor/channels.py`` is the table, and hands a gateway the steps of one
verification's workflow."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self, runtime_checkable

# Verify v2 rejects these in `brand`; the Python SDK caps it at 16 characters.
_BRAND_FORBIDDEN = re.compile(r"[/{}:$]")
BRAND_MAX_LENGTH = 16
# The SDK caps client_ref at 16 characters (the API allows 40), alphanumeric only.
CLIENT_REF_MAX_LENGTH = 16


@dataclass(frozen=True)
class WorkflowStep:
    """One step of a verification's workflow, as the gateway sends it to the provider.

    ``channel`` is Verify v2's channel string; ``params`` the step's fields besides
    ``to`` (WhatsApp's ``from``, silent auth's ``redirect_url``), in Verify's names;
    ``sends_with`` how each gateway that needs its own way builds the step, by gateway
    name (the Vonage gateway: a function returning the SDK's step model). Built by the
    channel table (``two_factor/channels.py``), never by a gateway.
    """

    channel: str
    params: Mapping[str, Any] = field(default_factory=dict)
    sends_with: Mapping[str, Callable[..., Any]] = field(default_factory=dict)


class StartedRequest(str):
    """What ``start`` returns: the provider's request id (a ``str``, as it always was),
    carrying the ``check_url`` Verify answers with when the workflow starts with silent
    authentication (the URL the voter's phone opens over mobile data; None otherwise)."""

    check_url: str | None

    def __new__(cls, request_id: str, check_url: str | None = None) -> StartedRequest:
        started = super().__new__(cls, request_id)
        started.check_url = check_url
        return started


@runtime_checkable
class VerifyGateway(Protocol):
    """Start, check, cancel and escalate a phone verification at a provider.

    Every method raises only :mod:`two_factor.gateways.errors`.
    """

    name: str

    @classmethod
    def from_settings(cls) -> Self:
        """A gateway configured from Django settings (what ``get_gateway`` returns)."""
        ...

    def start(
        self,
        *,
        number: str,
        client_ref: str,
        workflow: Sequence[WorkflowStep],
        locale: str | None = None,
    ) -> StartedRequest:
        """Send a code to ``number`` (E.164 with '+') by the first step of ``workflow``
        (the next steps follow on the provider's channel timeout), worded in Verify's
        ``locale`` ("fr-fr"; None: the configured one); return the provider's request id,
        with the check URL of a silent authentication step."""
        ...

    def check(self, *, request_id: str, code: str) -> None:
        """Return if ``code`` is right; raise InvalidCode, TooManyAttempts, ... if not."""
        ...

    def cancel(self, *, request_id: str) -> None: ...

    def next_channel(self, *, request_id: str) -> None:
        """Move to the workflow's next step now ("Call me instead")."""
        ...


@dataclass(frozen=True)
class GatewayConfig:
    """What every gateway sends with a verification. Ranges are settings' business
    (``pollstr/settings/`` refuses a bad value at start-up); only the brand, which
    settings take as free text, is checked here."""

    brand: str = "Pollstr"
    code_length: int = 6
    channel_timeout: int = 180
    locale: str = "en-us"
    request_timeout: float = 10.0
    # The site's host for the SMS's WebOTP line, "@<host> #<code>" ("" for none). A
    # gateway writing its own text adds it; Vonage's text is the account's template.
    webotp_host: str = ""

    def __post_init__(self) -> None:
        if not 1 <= len(self.brand) <= BRAND_MAX_LENGTH or _BRAND_FORBIDDEN.search(self.brand):
            raise ValueError(
                f"brand must be 1-{BRAND_MAX_LENGTH} characters without / {{ }} : $, "
                f"got {self.brand!r}"
            )

    @classmethod
    def from_settings(cls) -> GatewayConfig:
        from django.conf import settings
        from django.core.exceptions import ImproperlyConfigured

        try:
            return cls(
                brand=str(settings.TWO_FACTOR_BRAND),
                code_length=int(settings.TWO_FACTOR_CODE_LENGTH),
                channel_timeout=int(settings.TWO_FACTOR_CHANNEL_TIMEOUT),
                request_timeout=float(settings.VONAGE_TIMEOUT),
                webotp_host=str(settings.TWO_FACTOR_WEBOTP_HOST),
            )
        except ValueError as exc:
            raise ImproperlyConfigured(f"TWO_FACTOR_BRAND: {exc}") from exc


def webotp_line(host: str, code: str) -> str:
    """The last line of an SMS a browser reads the code from (WebOTP's origin-bound
    one-time code format)."""
    return f"@{host} #{code}"


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
