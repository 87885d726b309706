"""The real gateway: Vonage Verify v2 through the official SDK (v4), one workflow step
per step of the verification's workflow, each built the way its channel's row says
(``sends_with["vonage"]``, from ``steps.py``).

SDK facts this module is built around (docs/ARCHITECTURE.md, "Gateways"):

- A Vonage client mutates one shared headers dict per request, so it is not
  thread-safe: each thread keeps its own client (and so its own HTTP session with
  keep-alive: a call does not pay a new TLS handshake), never shared between threads.
- Without ``HttpClientOptions.timeout`` requests wait forever: we always set one.
- On ``RemoteDisconnected`` the SDK re-sends the request, POST included, up to
  ``pool_maxsize`` attempts. We allow one re-send. A start whose first attempt did
  reach Vonage then meets 409 and surfaces as ConcurrentRequest carrying the live
  request id; a re-sent check whose first attempt succeeded meets 404 (RequestNotFound).
- 400, 402, 409, 410, 422, 502 and 503 all arrive as a plain HttpRequestError: the
  status and the problem+json body decide, through ``problems.error_from_problem``.
- requests honours the environment (``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE``, the
  ``*_PROXY``/``NO_PROXY`` variables, ``~/.netrc``), and works it out again for every
  request: a scan of the whole environment for proxies and two file checks for a netrc,
  ~0.1 ms of CPU a call. A thread's client works it out once, when it is built, for
  the gateway's one host, with requests' own functions, and keeps the answer on its
  session (``_environment_once``); a change to the CA bundle variables builds a new
  client. Nothing here sets another trust store or proxy.
- Under JWT auth the SDK signs every request with the private key *as PEM text*, so
  PyJWT parses it per request, and parsing an RSA key (cryptography checks it) costs
  ~35 ms of CPU: more than the rest of a call. We parse it once per process and hand
  the SDK's signer the key object, which PyJWT takes as it is.
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import pydantic
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.types import PrivateKeyTypes
from django.core.exceptions import ImproperlyConfigured
from vonage import Auth, HttpClientOptions, Vonage
from vonage_http_client.errors import HttpRequestError
from vonage_utils.errors import VonageError
from vonage_verify import VerifyRequest

from two_factor.gateways.base import (
    GatewayConfig,
    StartedRequest,
    WorkflowStep,
    provider_client_ref,
    provider_number,
)
from two_factor.gateways.errors import (
    GatewayError,
    GatewayMisconfigured,
    InvalidNumber,
    TransientGatewayError,
)

from .problems import error_from_problem

# urllib3 retries: connect failures (nothing was sent, so safe) once; it never
# retries a POST whose response was lost. Our Celery tasks own the real retry policy.
MAX_RETRIES = 1
# The SDK's RemoteDisconnected loop makes up to pool_maxsize attempts: one re-send.
SEND_ATTEMPTS = 2


class _TemplatedVerifyRequest(VerifyRequest):
    """Verify's start body with `template_id`, which the SDK's model (vonage-verify 2.2)
    lacks: the account's template whose SMS text ends with the WebOTP line."""

    template_id: str | None = None


class VonageGateway:
    name = "vonage"

    def __init__(
        self,
        config: GatewayConfig | None = None,
        *,
        api_key: str | None = None,
        api_secret: str | None = None,
        application_id: str | None = None,
        private_key: str | None = None,
        api_host: str = "api.nexmo.com",
        template_id: str | None = None,
    ) -> None:
        self.config = config or GatewayConfig()
        self.api_host = api_host
        self.template_id = template_id
        signing_key: PrivateKeyTypes | None = None
        if application_id and private_key:
            # JWT: the only auth under which Vonage sends the signed status callbacks.
            pem = load_private_key(private_key)
            signing_key = _parsed_key(pem)
            credentials = {"application_id": application_id, "private_key": pem}
        elif api_key and api_secret:
            credentials = {"api_key": api_key, "api_secret": api_secret}
        else:
            raise ImproperlyConfigured(
                "The Vonage gateway needs VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY, "
                "or VONAGE_API_KEY and VONAGE_API_SECRET."
            )
        self.auth_type = "jwt" if "application_id" in credentials else "basic"
        # Identifies the credentials without keeping a second copy of the secret around.
        self._credentials_id = hashlib.sha256(
            repr(sorted(credentials.items())).encode()
        ).hexdigest()
        try:
            self._auth = Auth(**credentials)
        except (VonageError, pydantic.ValidationError) as exc:
            raise ImproperlyConfigured(f"Invalid Vonage credentials: {exc}") from exc
        if signing_key is not None:
            _sign_with(self._auth, signing_key)

    @classmethod
    def from_settings(cls) -> Self:
        from django.conf import settings

        return cls(
            GatewayConfig.from_settings(),
            api_key=settings.VONAGE_API_KEY or None,
            api_secret=settings.VONAGE_API_SECRET or None,
            application_id=settings.VONAGE_APPLICATION_ID or None,
            private_key=settings.VONAGE_PRIVATE_KEY or None,
            api_host=settings.VONAGE_API_HOST or "api.nexmo.com",
            template_id=settings.VONAGE_VERIFY_TEMPLATE_ID or None,
        )

    def start(
        self,
        *,
        number: str,
        client_ref: str,
        workflow: Sequence[WorkflowStep],
        locale: str | None = None,
    ) -> StartedRequest:
        with _translated("start"):
            to = provider_number(number)
            request = _TemplatedVerifyRequest(
                brand=self.config.brand,
                workflow=[_sdk_step(step, to) for step in workflow],
                code_length=self.config.code_length,
                channel_timeout=self.config.channel_timeout,
                locale=locale or self.config.locale,
                client_ref=provider_client_ref(client_ref) or None,
                template_id=self.template_id,
            )
            started = self._client().verify.start_verification(request)
            return StartedRequest(started.request_id, started.check_url)

    def check(self, *, request_id: str, code: str) -> None:
        with _translated("check"):
            self._client().verify.check_code(request_id, code)

    def cancel(self, *, request_id: str) -> None:
        with _translated("cancel"):
            self._client().verify.cancel_verification(request_id)

    def next_channel(self, *, request_id: str) -> None:
        with _translated("next_channel"):
            self._client().verify.trigger_next_workflow(request_id)

    def _client(self) -> Vonage:
        """This thread's client for these credentials and options (built on first use)."""
        # A gateway is built per task; the client outlives it, for the same settings and
        # trust store (see _environment_once).
        key = (
            self._credentials_id,
            self.api_host,
            self.config.request_timeout,
            os.environ.get("REQUESTS_CA_BUNDLE"),
            os.environ.get("CURL_CA_BUNDLE"),
        )
        clients: dict[tuple[object, ...], Vonage] = getattr(_per_thread, "clients", None) or {}
        _per_thread.clients = clients
        if key not in clients:
            clients[key] = self._new_client()
        return clients[key]

    def _new_client(self) -> Vonage:
        options = HttpClientOptions(
            api_host=self.api_host,
            # The SDK takes whole seconds; round up so a 0.5 s setting is not "no timeout".
            timeout=max(1, math.ceil(self.config.request_timeout)),
            max_retries=MAX_RETRIES,
            pool_connections=1,
            pool_maxsize=SEND_ATTEMPTS,
        )
        client = Vonage(self._auth, options)
        _environment_once(client, f"https://{self.api_host}/")
        return client


def _environment_once(client: Vonage, url: str) -> None:
    """Settle once what requests would read from the environment on every call to
    ``url``'s host (see the module docstring): the proxies, the trust store and a netrc
    login, as ``Session.request`` works them out, set on the SDK's session, which then
    stops reading the environment. Should a later SDK keep its session elsewhere, every
    call reads the environment as before (tests/two_factor/test_gateway_vonage.py
    checks that this one still is where we look)."""
    session = getattr(getattr(client, "http_client", None), "_session", None)
    if not isinstance(session, requests.Session) or not session.trust_env:
        return
    settled = session.merge_environment_settings(url, {}, None, None, None)
    netrc = requests.utils.get_netrc_auth(url)
    session.proxies = settled["proxies"]
    session.verify = settled["verify"]
    if netrc and session.auth is None:
        session.auth = netrc
    session.trust_env = False


def _sdk_step(step: WorkflowStep, to: str) -> Any:
    build = step.sends_with.get(VonageGateway.name)
    if build is None:
        raise GatewayMisconfigured(
            detail=f"start: the {step.channel!r} channel has no way to send it by Vonage"
        )
    return build(to, step.params)


# One client per thread (see the module docstring); keyed by the gateway's settings.
_per_thread = threading.local()


def load_private_key(value: str) -> str:
    """PEM text from the setting's value: PEM itself (literal "\\n" escapes allowed, as
    env files need) or a path to a PEM file. PKCS#1 keys are converted to the PKCS#8
    form the SDK insists on."""
    text = value.strip()
    if "-----BEGIN" not in text:
        try:
            text = Path(text).expanduser().read_text().strip()
        except OSError as exc:
            raise ImproperlyConfigured(f"Cannot read VONAGE_PRIVATE_KEY file: {exc}") from exc
    text = text.replace("\\n", "\n")
    if "-----BEGIN PRIVATE KEY-----" in text:
        return text + "\n"
    return (
        _parsed_key(text)
        .private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        .decode()
    )


@functools.lru_cache(maxsize=4)
def _parsed_key(pem: str) -> PrivateKeyTypes:
    """The key a PEM text holds, parsed once per process and text (see the module
    docstring); a text that holds no key is a setup error, found when the gateway is
    built rather than on the first send."""
    try:
        return serialization.load_pem_private_key(pem.encode(), password=None)
    except (ValueError, TypeError) as exc:
        raise ImproperlyConfigured(f"VONAGE_PRIVATE_KEY is not a PEM private key: {exc}") from exc


def _sign_with(auth: Auth, key: PrivateKeyTypes) -> None:
    """Make the SDK's JWT signer (vonage_jwt.JwtClient, which keeps the key it passes
    to PyJWT in ``_private_key``) sign with the parsed key instead of the PEM text.
    Should a later SDK keep it elsewhere, it still signs, only slower:
    tests/two_factor/test_gateway_vonage.py counts the parses."""
    signer = getattr(auth, "_jwt_client", None)
    if signer is not None and isinstance(getattr(signer, "_private_key", None), (str, bytes)):
        signer._private_key = key


@contextmanager
def _translated(operation: str) -> Iterator[None]:
    """Every SDK, HTTP and transport failure becomes one of our gateway errors."""
    try:
        yield
    except GatewayError:
        raise
    except HttpRequestError as exc:
        response = exc.response
        raise error_from_problem(
            response.status_code, _problem(response), operation=operation
        ) from exc
    except requests.exceptions.SSLError as exc:
        if "CERTIFICATE_VERIFY_FAILED" in str(exc):
            # Our trust store or an interceptor: retrying won't change the certificate.
            raise GatewayMisconfigured(
                detail=f"{operation}: TLS verification failed: {exc}"
            ) from exc
        raise TransientGatewayError(detail=f"{operation}: TLS error: {exc}") from exc
    except requests.exceptions.RequestException as exc:
        # Timeouts, refused/reset connections, a dropped response after the re-send.
        raise TransientGatewayError(detail=f"{operation}: {type(exc).__name__}: {exc}") from exc
    except OSError as exc:
        # Not a transport failure (those are RequestException): a missing CA bundle, say.
        raise GatewayMisconfigured(detail=f"{operation}: {type(exc).__name__}: {exc}") from exc
    except pydantic.ValidationError as exc:
        # The SDK's models refuse what Verify would refuse: a malformed `to` is the
        # voter's number; anything else (brand, locale, client_ref) is our setup.
        fields = [".".join(str(part) for part in error["loc"]) for error in exc.errors()]
        detail = f"{operation}: rejected by the SDK: {', '.join(fields)}"
        if any(field == "to" or field.endswith(".to") for field in fields):
            raise InvalidNumber(detail=detail) from exc
        raise GatewayMisconfigured(detail=detail) from exc
    except VonageError as exc:
        raise GatewayMisconfigured(detail=f"{operation}: {type(exc).__name__}: {exc}") from exc


def _problem(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}
