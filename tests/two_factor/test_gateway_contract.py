"""What every gateway promises (two_factor.gateways.VerifyGateway), proved once for each.

Each gateway runs against what it really talks to: the sandbox on Django's cache, the
Vonage gateway through the real SDK over HTTPS to the Verify double (``fake_verify``). A
new gateway gets the whole suite by adding a harness below: how to build it, read the
codes it delivered, and move its provider's clock.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.fakes.verify_server import FAKE_API_KEY, FAKE_API_SECRET, FakeVerifyServer
from two_factor.channels import CHANNELS, MAX_STEPS, workflow_steps
from two_factor.gateways import (
    ConcurrentRequest,
    GatewayConfig,
    GatewayMisconfigured,
    InvalidCode,
    InvalidNumber,
    NoMoreChannels,
    RequestNotFound,
    StartedRequest,
    StepTakesNoCode,
    TooManyAttempts,
    VerifyGateway,
)
from two_factor.gateways.sandbox import SandboxGateway, sandbox_inbox
from two_factor.gateways.sandbox.gateway import INBOX_SIZE
from two_factor.gateways.vonage.client import VonageGateway

NUMBER = "+33612345678"
OTHER_NUMBER = "+4915112345678"
CHANNEL_TIMEOUT = 60
WEBOTP_HOST = "pollstr.example"
CONFIG = GatewayConfig(
    code_length=6, channel_timeout=CHANNEL_TIMEOUT, request_timeout=1, webotp_host=WEBOTP_HOST
)
# The operator's Verify template for the SMS (docs/OPERATIONS.md, "WebOTP"), as the
# double's account holds it.
VONAGE_TEMPLATE_ID = "8f35a1a7-eb2f-4552-8fdf-fffdaee41bc9"
VONAGE_SMS_TEMPLATE = "Your ${brand} code is ${code}.\n\n@" + WEBOTP_HOST + " #${code}"
# Every channel of the table (two_factor/channels.py) that sends a code; a workflow of as
# many as Verify takes. Channels without a code (silent authentication) have their own.
EVERY_CHANNEL = [name for name, row in CHANNELS.items() if row.takes_code]
CODE_LESS = [name for name, row in CHANNELS.items() if not row.takes_code]
WORKFLOW = EVERY_CHANNEL[:MAX_STEPS]
WHATSAPP_FROM = "447700900001"


@dataclass
class Harness:
    """A gateway under test and a window on its provider."""

    make: Callable[[GatewayConfig], VerifyGateway]
    # (request id, channel, code) of every message the provider sent, oldest first.
    sent: Callable[[], list[tuple[str, str, str]]]
    # (request id, channel, text) of the same messages.
    texts: Callable[[], list[tuple[str, str, str]]]
    advance: Callable[[float], None]
    # The same messages whole, as the provider recorded them (`from` included).
    messages: Callable[[], list[dict[str, Any]]]
    # (request id, Verify locale) of the same messages, as the provider recorded them.
    locales: Callable[[], list[tuple[str, str]]]
    # The voter's phone opens a silent-auth check URL and its network confirms (the
    # redirect's location, with request_id and code) or cannot (the step fails).
    silent_confirm: Callable[[StartedRequest], str]
    silent_fail: Callable[[StartedRequest], None]

    @property
    def gateway(self) -> VerifyGateway:
        """A new gateway object each time, as each task or request makes one."""
        return self.make(CONFIG)

    def delivered(self, request_id: str) -> list[tuple[str, str]]:
        """(channel, code) of every message sent for ``request_id``, oldest first."""
        return [(channel, code) for rid, channel, code in self.sent() if rid == request_id]

    def code(self, request_id: str) -> str:
        return self.delivered(request_id)[-1][1]

    def wrong_code(self, request_id: str) -> str:
        return "000000" if self.code(request_id) != "000000" else "111111"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def sandbox_harness(settings: Any) -> Harness:
    # A fresh locmem cache: the store a real sandbox uses, shared by every gateway object.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"contract-{uuid.uuid4().hex}",
        }
    }
    settings.TWO_FACTOR_SANDBOX_LATENCY = 0
    settings.TWO_FACTOR_SANDBOX_FAILURE_RATE = 0
    settings.TWO_FACTOR_WEBHOOK_BASE_URL = ""
    clock = Clock()

    def sent() -> list[tuple[str, str, str]]:
        inbox = reversed(sandbox_inbox(limit=INBOX_SIZE))
        return [(m["request_id"], m["channel"], m["code"]) for m in inbox]

    def texts() -> list[tuple[str, str, str]]:
        inbox = reversed(sandbox_inbox(limit=INBOX_SIZE))
        return [(m["request_id"], m["channel"], m["text"]) for m in inbox]

    def locales() -> list[tuple[str, str]]:
        inbox = reversed(sandbox_inbox(limit=INBOX_SIZE))
        return [(m["request_id"], m["locale"]) for m in inbox]

    return Harness(
        make=lambda config: SandboxGateway(config, clock=clock),
        sent=sent,
        texts=texts,
        advance=clock.advance,
        messages=lambda: list(reversed(sandbox_inbox(limit=INBOX_SIZE))),
        locales=locales,
        silent_confirm=lambda request_id: SandboxGateway(CONFIG, clock=clock).silent_auth_complete(
            request_id
        ),
        silent_fail=lambda request_id: SandboxGateway(CONFIG, clock=clock).silent_auth_fail(
            request_id
        ),
    )


def vonage_harness(fake: FakeVerifyServer) -> Harness:
    def sent() -> list[tuple[str, str, str]]:
        return [(m["request_id"], m["channel"], m["code"]) for m in fake.messages]

    def texts() -> list[tuple[str, str, str]]:
        return [(m["request_id"], m["channel"], m["text"]) for m in fake.messages]

    fake.templates[VONAGE_TEMPLATE_ID] = VONAGE_SMS_TEMPLATE
    return Harness(
        make=lambda config: VonageGateway(
            config,
            api_key=FAKE_API_KEY,
            api_secret=FAKE_API_SECRET,
            api_host=fake.host,
            template_id=VONAGE_TEMPLATE_ID,
        ),
        sent=sent,
        texts=texts,
        advance=fake.advance,
        messages=lambda: list(fake.messages),
        locales=lambda: [(m["request_id"], m["locale"]) for m in fake.messages],
        silent_confirm=lambda started: _open_check_url(fake, started, "complete"),
        silent_fail=lambda started: _open_check_url(fake, started, "fail") and None,
    )


def _open_check_url(fake: FakeVerifyServer, started: StartedRequest, network: str) -> str:
    """What the handset does: GET the check URL (over mobile data), not following the
    redirect back to us."""
    import requests

    fake.silent_auth = network  # type: ignore[assignment]
    assert started.check_url
    response = requests.get(started.check_url, allow_redirects=False, timeout=5)
    return response.headers.get("Location", "")


@pytest.fixture(params=["sandbox", "vonage"])
def provider(request: pytest.FixtureRequest) -> Harness:
    request.getfixturevalue("settings").VONAGE_WHATSAPP_FROM = WHATSAPP_FROM
    if request.param == "sandbox":
        return sandbox_harness(request.getfixturevalue("settings"))
    return vonage_harness(request.getfixturevalue("fake_verify"))


def start(provider: Harness, number: str = NUMBER, workflow: list[str] = WORKFLOW) -> str:
    return provider.gateway.start(
        number=number, client_ref=uuid.uuid4().hex, workflow=workflow_steps(workflow)
    )


def test_start_returns_an_id_and_delivers_a_code_by_the_first_channel(
    provider: Harness,
) -> None:
    request_id = start(provider)

    assert isinstance(provider.gateway, VerifyGateway)
    assert request_id
    [(channel, code)] = provider.delivered(request_id)
    assert channel == WORKFLOW[0]
    assert len(code) == CONFIG.code_length
    assert code.isdigit()


@pytest.mark.parametrize("channel", EVERY_CHANNEL)
def test_every_channel_delivers_the_code_as_the_first_step_and_it_checks(
    provider: Harness, channel: str
) -> None:
    request_id = start(provider, workflow=[channel])

    [(sent_by, code)] = provider.delivered(request_id)
    assert sent_by == channel
    provider.gateway.check(request_id=request_id, code=code)


@pytest.mark.parametrize("channel", EVERY_CHANNEL)
def test_every_channel_takes_over_as_a_later_step_with_the_same_code(
    provider: Harness, channel: str
) -> None:
    first = next(other for other in EVERY_CHANNEL if other != channel)
    request_id = start(provider, workflow=[first, channel])

    provider.gateway.next_channel(request_id=request_id)

    assert [sent_by for sent_by, _ in provider.delivered(request_id)] == [first, channel]
    assert len({code for _, code in provider.delivered(request_id)}) == 1
    provider.gateway.check(request_id=request_id, code=provider.code(request_id))


def _silent_start(provider: Harness) -> StartedRequest:
    return provider.gateway.start(
        number=NUMBER,
        client_ref=uuid.uuid4().hex,
        workflow=workflow_steps([*CODE_LESS, WORKFLOW[0]]),
    )


@pytest.mark.parametrize("channel", CODE_LESS)
def test_a_silent_step_answers_with_a_check_url_sends_nothing_and_takes_no_typed_code(
    provider: Harness, channel: str
) -> None:
    started = _silent_start(provider)

    assert started.check_url
    assert provider.delivered(started) == []
    with pytest.raises(StepTakesNoCode):
        provider.gateway.check(request_id=started, code="123456")


def test_a_network_that_confirms_redirects_with_the_code_that_then_checks(
    provider: Harness,
) -> None:
    started = _silent_start(provider)

    location = provider.silent_confirm(started)

    assert location.startswith("/2fa/silent/")
    query = dict(part.split("=", 1) for part in location.split("?", 1)[1].split("&"))
    assert query["request_id"] == started
    provider.gateway.check(request_id=started, code=query["code"])
    with pytest.raises(RequestNotFound):
        provider.gateway.check(request_id=started, code=query["code"])


def test_a_network_that_cannot_confirm_moves_the_workflow_to_its_code_step(
    provider: Harness,
) -> None:
    started = _silent_start(provider)

    provider.silent_fail(started)

    [(channel, code)] = provider.delivered(started)
    assert channel == WORKFLOW[0]
    provider.gateway.check(request_id=started, code=code)


def test_whatsapp_goes_from_the_configured_business_number(provider: Harness) -> None:
    request_id = start(provider, workflow=["whatsapp"])

    [message] = [m for m in provider.messages() if m["request_id"] == request_id]
    assert message["channel"] == "whatsapp"
    assert message["from"] == WHATSAPP_FROM


def test_the_sms_ends_with_the_line_a_browser_reads_the_code_from(provider: Harness) -> None:
    request_id = start(provider)

    [(channel, text)] = [(c, t) for rid, c, t in provider.texts() if rid == request_id]

    # WebOTP's origin-bound format: the last line is "@<host> #<code>".
    assert channel == "sms"
    assert text.splitlines()[-1] == f"@{WEBOTP_HOST} #{provider.code(request_id)}"


@pytest.mark.parametrize("locale", ["fr-fr", "es-es"])
def test_the_code_goes_out_in_the_locale_asked_for(provider: Harness, locale: str) -> None:
    request_id = provider.gateway.start(
        number=NUMBER,
        client_ref=uuid.uuid4().hex,
        workflow=workflow_steps(WORKFLOW),
        locale=locale,
    )

    assert [loc for rid, loc in provider.locales() if rid == request_id] == [locale]


def test_without_a_locale_the_configured_one_goes_out(provider: Harness) -> None:
    request_id = start(provider)

    assert [loc for rid, loc in provider.locales() if rid == request_id] == [CONFIG.locale]


def test_the_right_code_checks_once(provider: Harness) -> None:
    request_id = start(provider)

    provider.gateway.check(request_id=request_id, code=provider.code(request_id))

    with pytest.raises(RequestNotFound) as again:
        provider.gateway.check(request_id=request_id, code=provider.code(request_id))
    assert "expired or was already used" in str(again.value)


def test_a_wrong_code_raises_invalid_code_and_leaves_the_right_one_usable(
    provider: Harness,
) -> None:
    request_id = start(provider)

    with pytest.raises(InvalidCode) as invalid:
        provider.gateway.check(request_id=request_id, code=provider.wrong_code(request_id))

    assert (
        str(invalid.value) == "That code doesn't match. Check the code we sent you and try again."
    )
    assert invalid.value.detail  # the provider's reason, for the logs
    provider.gateway.check(request_id=request_id, code=provider.code(request_id))


def test_the_third_wrong_code_raises_too_many_attempts_and_ends_the_request(
    provider: Harness,
) -> None:
    request_id = start(provider)
    wrong = provider.wrong_code(request_id)

    for _ in range(2):
        with pytest.raises(InvalidCode):
            provider.gateway.check(request_id=request_id, code=wrong)
    with pytest.raises(TooManyAttempts):
        provider.gateway.check(request_id=request_id, code=wrong)
    with pytest.raises(RequestNotFound):
        provider.gateway.check(request_id=request_id, code=provider.code(request_id))


def test_a_check_after_every_channel_timed_out_raises_request_not_found(
    provider: Harness,
) -> None:
    request_id = start(provider)
    code = provider.code(request_id)

    provider.advance(CHANNEL_TIMEOUT * len(WORKFLOW) + 1)

    with pytest.raises(RequestNotFound):
        provider.gateway.check(request_id=request_id, code=code)


def test_an_unknown_request_raises_request_not_found(provider: Harness) -> None:
    with pytest.raises(RequestNotFound):
        provider.gateway.check(request_id=str(uuid.uuid4()), code="123456")


def test_a_second_start_for_the_same_number_raises_concurrent_request_with_the_live_id(
    provider: Harness,
) -> None:
    live_id = start(provider)

    with pytest.raises(ConcurrentRequest) as conflict:
        start(provider)

    assert conflict.value.live_request_id == live_id
    assert start(provider, OTHER_NUMBER) != live_id


def test_next_channel_steps_through_the_channels_with_the_same_code_then_no_more(
    provider: Harness,
) -> None:
    request_id = start(provider)

    for _ in WORKFLOW[1:]:
        provider.gateway.next_channel(request_id=request_id)

    sent = provider.delivered(request_id)
    assert [channel for channel, _ in sent] == WORKFLOW
    assert len({code for _, code in sent}) == 1
    with pytest.raises(NoMoreChannels):
        provider.gateway.next_channel(request_id=request_id)
    provider.gateway.check(request_id=request_id, code=provider.code(request_id))


def test_cancel_ends_the_request(provider: Harness) -> None:
    request_id = start(provider)

    provider.gateway.cancel(request_id=request_id)

    with pytest.raises(RequestNotFound):
        provider.gateway.check(request_id=request_id, code=provider.code(request_id))
    with pytest.raises(RequestNotFound):
        provider.gateway.cancel(request_id=request_id)
    assert start(provider) != request_id  # the number is free again


@pytest.mark.parametrize("number", ["+0612345678", "+33", "not a number"])
def test_a_malformed_number_raises_invalid_number_and_sends_nothing(
    provider: Harness, number: str
) -> None:
    with pytest.raises(InvalidNumber):
        start(provider, number)

    assert provider.sent() == []


def test_settings_the_provider_refuses_raise_gateway_misconfigured(provider: Harness) -> None:
    # Settings refuse these ranges at start-up; a gateway built behind their back
    # meets the provider's own refusal, which is ours to fix, not the voter's.
    gateway = provider.make(GatewayConfig(code_length=12, channel_timeout=CHANNEL_TIMEOUT))

    with pytest.raises(GatewayMisconfigured):
        gateway.start(number=NUMBER, client_ref=uuid.uuid4().hex, workflow=workflow_steps(WORKFLOW))


def test_a_whatsapp_step_without_a_sender_raises_gateway_misconfigured_on_vonage(
    fake_verify: FakeVerifyServer, settings: Any
) -> None:
    # Verify requires WhatsApp's `from` (settings require it with the Vonage gateway);
    # the sandbox, offline without a business number, sends from its own name instead.
    settings.VONAGE_WHATSAPP_FROM = ""
    provider = vonage_harness(fake_verify)

    with pytest.raises(GatewayMisconfigured):
        start(provider, workflow=["whatsapp"])

    assert provider.sent() == []
    assert fake_verify.requests_for("start") == []  # refused before anything was sent
