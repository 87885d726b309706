"""What only the Vonage gateway does, through the real SDK over real HTTPS against
FakeVerifyServer: the wire format, SDK and HTTP failures, TLS, authentication, settings.
What every gateway does is in test_gateway_contract.py."""

from __future__ import annotations

import base64
import socket
import time
import uuid
from pathlib import Path
from typing import Any

import jwt
import pytest
import trustme
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.core.exceptions import ImproperlyConfigured

from tests.fakes.verify_server import FAKE_API_KEY, FAKE_API_SECRET, FakeVerifyServer
from tests.phone_numbers import NUMBER, provider_digits
from tests.two_factor.verifications import default_workflow
from two_factor.channels import workflow_steps
from two_factor.gateways import (
    ConcurrentRequest,
    GatewayConfig,
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
    get_gateway,
)
from two_factor.gateways.errors import Blocked
from two_factor.gateways.vonage.client import VonageGateway
from two_factor.gateways.vonage.problems import error_from_problem

CLIENT_REF = uuid.uuid4().hex
# The SDK takes whole seconds; 1 s keeps the timeout tests fast.
CONFIG = GatewayConfig(code_length=6, channel_timeout=60, request_timeout=1)


@pytest.fixture
def gateway(fake_verify: FakeVerifyServer) -> VonageGateway:
    return VonageGateway(
        CONFIG, api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, api_host=fake_verify.host
    )


@pytest.fixture
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem(key: rsa.RSAPrivateKey, form: serialization.PrivateFormat) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, form, serialization.NoEncryption()
    ).decode()


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def wrong_code(fake: FakeVerifyServer, request_id: str) -> str:
    return "000000" if fake.code_for(request_id) != "000000" else "111111"


# --- the happy path and what goes over the wire ------------------------------------------


def test_start_returns_the_request_id_the_server_created(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert fake_verify.emulator.status(request_id) == "in_progress"
    [sent] = fake_verify.requests_for("start")
    assert sent.method == "POST"
    assert sent.path == "/v2/verify"
    assert sent.json == {
        "brand": "Pollstr",
        "workflow": [
            {"channel": "sms", "to": provider_digits(NUMBER)},
            {"channel": "voice", "to": provider_digits(NUMBER)},
        ],
        "locale": "en-us",
        "channel_timeout": 60,
        "client_ref": CLIENT_REF[:16],
        "code_length": 6,
    }


def test_start_sends_verify_the_voters_locale(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow(), locale="fr-fr")

    [sent] = fake_verify.requests_for("start")
    assert sent.json["locale"] == "fr-fr"


def test_requests_go_to_the_configured_api_host(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    [sent] = fake_verify.requests_log
    assert sent.headers["Host"] == fake_verify.host


# --- refusals -------------------------------------------------------------------------


def test_a_number_the_provider_refuses_raises_invalid_number(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    fake_verify.invalid_numbers.add(provider_digits(NUMBER))

    with pytest.raises(InvalidNumber) as refused:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "422" in refused.value.detail
    assert len(fake_verify.requests_for("start")) == 1


def test_a_malformed_number_is_refused_by_the_sdk_before_anything_is_sent(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    with pytest.raises(InvalidNumber):
        gateway.start(number="+0612345678", client_ref=CLIENT_REF, workflow=default_workflow())

    assert fake_verify.requests_log == []


@pytest.mark.parametrize(
    "invalid_parameters",
    [[{"name": "brand", "reason": "too long"}], {"name": "brand", "reason": "too long"}],
    ids=["list", "object"],
)
def test_a_422_on_the_brand_raises_gateway_misconfigured(
    gateway: VonageGateway, fake_verify: FakeVerifyServer, invalid_parameters: Any
) -> None:
    fake_verify.fail_next(
        "start",
        status=422,
        body={"title": "Invalid params", "invalid_parameters": invalid_parameters},
    )

    with pytest.raises(GatewayMisconfigured) as refused:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "brand" in refused.value.detail


def test_a_brand_the_sdk_refuses_raises_gateway_misconfigured(
    fake_verify: FakeVerifyServer,
) -> None:
    # GatewayConfig stops a long brand; a bad locale only the SDK catches.
    gateway = VonageGateway(
        GatewayConfig(locale="xx-yy"),
        api_key=FAKE_API_KEY,
        api_secret=FAKE_API_SECRET,
        api_host=fake_verify.host,
    )

    with pytest.raises(GatewayMisconfigured, match="problem on our side"):
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    assert fake_verify.requests_log == []


def test_wrong_credentials_raise_gateway_misconfigured(fake_verify: FakeVerifyServer) -> None:
    gateway = VonageGateway(
        CONFIG, api_key=FAKE_API_KEY, api_secret="wrong", api_host=fake_verify.host
    )

    with pytest.raises(GatewayMisconfigured) as refused:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "401" in refused.value.detail
    assert fake_verify.messages == []


def test_a_low_balance_raises_insufficient_balance(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    fake_verify.fail_next("start", status=402)

    with pytest.raises(InsufficientBalance):
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())


def test_a_409_on_check_raises_step_takes_no_code(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    fake_verify.fail_next("check", status=409, body={"title": "Conflict", "detail": "silent"})

    with pytest.raises(StepTakesNoCode):
        gateway.check(request_id=request_id, code=fake_verify.code_for(request_id))


def test_a_fraud_block_raises_blocked(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    fake_verify.fail_next(
        "start", status=403, body={"title": "Forbidden", "detail": "Blocked by fraud checks."}
    )

    with pytest.raises(Blocked):
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())


# --- transient failures ---------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504])
def test_rate_limits_and_server_errors_are_transient(
    gateway: VonageGateway, fake_verify: FakeVerifyServer, status: int
) -> None:
    fake_verify.fail_next("start", status=status)

    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert str(status) in failed.value.detail
    # Only one request: status errors are not retried by the SDK.
    assert len(fake_verify.requests_for("start")) == 1
    assert gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())


def test_a_server_slower_than_the_timeout_is_transient_and_its_start_still_lands(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    # The server answers after 3 s; the gateway gives up after its 1 s timeout. The bound
    # leaves a loaded machine 1.5 s of slack and still fails a client that waited it out.
    fake_verify.delay_next("start", seconds=3)

    began = time.monotonic()
    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert time.monotonic() - began < 2.5
    assert "Timeout" in failed.value.detail
    # The provider went on and sent the code: a retry meets the live request.
    deadline = time.monotonic() + 6
    while not fake_verify.messages and time.monotonic() < deadline:
        time.sleep(0.02)
    with pytest.raises(ConcurrentRequest) as conflict:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    assert conflict.value.live_request_id == fake_verify.messages[0]["request_id"]


def test_a_lost_start_response_is_resent_by_the_sdk_and_meets_the_live_request(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    fake_verify.drop_next("start", process=True)

    with pytest.raises(ConcurrentRequest) as conflict:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert len(fake_verify.requests_for("start")) == 2
    [message] = fake_verify.messages
    assert conflict.value.live_request_id == message["request_id"]


def test_a_lost_check_response_is_resent_and_reports_not_found(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    # The first check verified the code; the SDK's re-send finds nothing live.
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    fake_verify.drop_next("check", process=True)

    with pytest.raises(RequestNotFound):
        gateway.check(request_id=request_id, code=fake_verify.code_for(request_id))

    assert len(fake_verify.requests_for("check")) == 2
    assert fake_verify.emulator.status(request_id) == "completed"


def test_connections_dropped_on_every_attempt_are_transient_after_one_resend(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    fake_verify.drop_next("start", times=5, process=False)

    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "RemoteDisconnected" in failed.value.detail
    assert len(fake_verify.requests_for("start")) == 2
    assert fake_verify.messages == []


def test_a_refused_connection_is_transient(fake_verify: FakeVerifyServer) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    gateway = VonageGateway(
        CONFIG, api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, api_host=f"127.0.0.1:{port}"
    )

    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "ConnectionError" in failed.value.detail


# --- the environment: proxies and trust store, read once per client --------------------


def _nobody_listens() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}"


def _proxy_everything(monkeypatch: pytest.MonkeyPatch, proxy: str) -> None:
    for name in ("HTTPS_PROXY", "https_proxy"):
        monkeypatch.setenv(name, proxy)
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_a_proxy_from_the_environment_is_used(
    gateway: VonageGateway, fake_verify: FakeVerifyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    _proxy_everything(monkeypatch, _nobody_listens())

    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "ProxyError" in failed.value.detail  # it went to the proxy, not to the server
    assert fake_verify.requests_log == []


def test_a_client_settles_the_environment_once_and_a_new_trust_store_gets_a_new_client(
    gateway: VonageGateway,
    fake_verify: FakeVerifyServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    gateway.start(number="+33612345690", client_ref=CLIENT_REF, workflow=default_workflow())
    session = gateway._client().http_client._session  # where _environment_once looks
    assert session.trust_env is False
    assert session.verify == fake_verify.ca_bundle_path

    # The process's proxies are settled when its thread's client is built...
    _proxy_everything(monkeypatch, _nobody_listens())
    gateway.start(number="+33612345691", client_ref=CLIENT_REF, workflow=default_workflow())
    assert len(fake_verify.requests_for("start")) == 2

    # ...and another trust store is another client, which reads the environment anew.
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))
    with pytest.raises(TransientGatewayError) as failed:
        gateway.start(number="+33612345692", client_ref=CLIENT_REF, workflow=default_workflow())
    assert "ProxyError" in failed.value.detail
    assert gateway._client().http_client._session is not session


# --- TLS and authentication -----------------------------------------------------------


def test_a_server_outside_the_trusted_ca_bundle_fails_tls(
    gateway: VonageGateway,
    fake_verify: FakeVerifyServer,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    other_ca = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other_ca))
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(other_ca))

    with pytest.raises(GatewayMisconfigured) as refused:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "CERTIFICATE_VERIFY_FAILED" in refused.value.detail
    assert fake_verify.requests_log == []


def test_a_missing_ca_bundle_is_gateway_misconfigured(
    gateway: VonageGateway, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(tmp_path / "missing.pem"))

    with pytest.raises(GatewayMisconfigured) as refused:
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert "missing.pem" in refused.value.detail


def test_key_and_secret_are_sent_as_basic_auth(
    gateway: VonageGateway, fake_verify: FakeVerifyServer
) -> None:
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    expected = base64.b64encode(f"{FAKE_API_KEY}:{FAKE_API_SECRET}".encode()).decode()
    assert fake_verify.requests_log[0].headers["Authorization"] == f"Basic {expected}"


def test_an_application_and_private_key_are_sent_as_a_signed_bearer_jwt(
    fake_verify: FakeVerifyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    fake_verify.jwt_public_key = public_pem(rsa_key)
    application_id = str(uuid.uuid4())
    gateway = VonageGateway(
        CONFIG,
        application_id=application_id,
        private_key=pem(rsa_key, serialization.PrivateFormat.PKCS8),
        api_host=fake_verify.host,
    )

    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    gateway.check(request_id=request_id, code=fake_verify.code_for(request_id))

    scheme, token = fake_verify.requests_log[0].headers["Authorization"].split(" ")
    assert scheme == "Bearer"
    claims = jwt.decode(token, public_pem(rsa_key), algorithms=["RS256"])
    assert claims["application_id"] == application_id


def test_the_private_key_is_parsed_once_per_process_not_per_request(
    fake_verify: FakeVerifyServer, rsa_key: rsa.RSAPrivateKey, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Parsing an RSA key costs ~35 ms of CPU (benchmarks/gateway_cost.py); the SDK would
    # have PyJWT parse the PEM text on every request.
    fake_verify.jwt_public_key = public_pem(rsa_key)
    parses: list[bytes] = []
    for module in (serialization, jwt.algorithms):
        real = module.load_pem_private_key

        def counting(data: bytes, *args: Any, _real: Any = real, **kwargs: Any) -> Any:
            if b"PRIVATE KEY" in data:  # (the fake server's decode tries its public key too)
                parses.append(data)
            return _real(data, *args, **kwargs)

        monkeypatch.setattr(module, "load_pem_private_key", counting)
    application_id = str(uuid.uuid4())

    for _ in range(3):  # a gateway per task, as the tasks build theirs
        gateway = VonageGateway(
            CONFIG,
            application_id=application_id,
            private_key=pem(rsa_key, serialization.PrivateFormat.PKCS8),
            api_host=fake_verify.host,
        )
        request_id = gateway.start(
            number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow()
        )
        gateway.cancel(request_id=request_id)

    assert len(parses) == 1
    assert len(fake_verify.requests_log) == 6
    for sent in fake_verify.requests_log:
        token = sent.headers["Authorization"].removeprefix("Bearer ")
        claims = jwt.decode(token, public_pem(rsa_key), algorithms=["RS256"])
        assert claims["application_id"] == application_id
    # Each request still carries a token of its own.
    tokens = {sent.headers["Authorization"] for sent in fake_verify.requests_log}
    assert len(tokens) == 6


def test_a_private_key_that_is_not_a_key_is_refused_when_the_gateway_is_built() -> None:
    garbage = "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----"

    with pytest.raises(ImproperlyConfigured, match="VONAGE_PRIVATE_KEY is not a PEM private key"):
        VonageGateway(CONFIG, application_id="app", private_key=garbage)


def test_a_jwt_signed_by_another_key_is_refused(
    fake_verify: FakeVerifyServer, rsa_key: rsa.RSAPrivateKey
) -> None:
    fake_verify.jwt_public_key = public_pem(rsa_key)
    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    gateway = VonageGateway(
        CONFIG,
        application_id=str(uuid.uuid4()),
        private_key=pem(other_key, serialization.PrivateFormat.PKCS8),
        api_host=fake_verify.host,
    )

    with pytest.raises(GatewayMisconfigured):
        gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())


def test_a_private_key_can_be_a_file_path_or_pkcs1_text_with_escaped_newlines(
    fake_verify: FakeVerifyServer, rsa_key: rsa.RSAPrivateKey, tmp_path: Path
) -> None:
    fake_verify.jwt_public_key = public_pem(rsa_key)
    key_file = tmp_path / "private.key"
    key_file.write_text(pem(rsa_key, serialization.PrivateFormat.PKCS8))
    one_line_pkcs1 = pem(rsa_key, serialization.PrivateFormat.TraditionalOpenSSL).replace(
        "\n", "\\n"
    )

    for private_key in (str(key_file), one_line_pkcs1):
        gateway = VonageGateway(
            CONFIG,
            application_id=str(uuid.uuid4()),
            private_key=private_key,
            api_host=fake_verify.host,
        )
        request_id = gateway.start(
            number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow()
        )
        gateway.cancel(request_id=request_id)

    assert [r.operation for r in fake_verify.requests_log] == ["start", "cancel"] * 2


def test_an_unreadable_private_key_is_improperly_configured(tmp_path: Path) -> None:
    with pytest.raises(ImproperlyConfigured, match="VONAGE_PRIVATE_KEY"):
        VonageGateway(CONFIG, application_id="app", private_key=str(tmp_path / "missing.key"))


def test_a_whatsapp_step_goes_over_the_wire_with_its_business_number(
    gateway: VonageGateway, fake_verify: FakeVerifyServer, settings: Any
) -> None:
    settings.VONAGE_WHATSAPP_FROM = "447700900001"

    gateway.start(
        number=NUMBER, client_ref=CLIENT_REF, workflow=workflow_steps(["whatsapp", "sms"])
    )

    [sent] = fake_verify.requests_for("start")
    assert sent.json["workflow"] == [
        {"channel": "whatsapp", "to": provider_digits(NUMBER), "from": "447700900001"},
        {"channel": "sms", "to": provider_digits(NUMBER)},
    ]
    [message] = fake_verify.messages
    assert (message["channel"], message["from"]) == ("whatsapp", "447700900001")


def test_switching_two_steps_ahead_calls_next_workflow_twice_through_the_services(
    settings: Any,
    fake_verify: FakeVerifyServer,
    make_verification: Any,
    phone: Any,
    eager_tasks: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    from two_factor import services
    from two_factor.models import Status

    _use_vonage(settings, fake_verify)
    settings.VONAGE_WHATSAPP_FROM = "447700900001"
    settings.TWO_FACTOR_WORKFLOW = ("sms", "whatsapp", "voice")
    verification = make_verification(Status.QUEUED)
    services.verification_send(verification_id=verification.pk, delivery="task-1")
    verification.refresh_from_db()

    with django_capture_on_commit_callbacks(execute=True):
        services.verification_switch_channel(verification=verification, channel="voice")

    verification.refresh_from_db()
    assert (verification.channel, verification.step) == ("voice", 2)
    calls = fake_verify.requests_for("next_workflow")
    assert [c.path for c in calls] == [f"/v2/verify/{verification.request_id}/next_workflow"] * 2
    assert [m["channel"] for m in fake_verify.messages] == ["sms", "whatsapp", "voice"]


def _use_vonage(settings: Any, fake: FakeVerifyServer) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = "two_factor.gateways.vonage.client.VonageGateway"
    settings.VONAGE_API_KEY = FAKE_API_KEY
    settings.VONAGE_API_SECRET = FAKE_API_SECRET
    settings.VONAGE_APPLICATION_ID = ""
    settings.VONAGE_PRIVATE_KEY = ""
    settings.VONAGE_API_HOST = fake.host


def test_a_gateway_without_credentials_is_improperly_configured() -> None:
    with pytest.raises(ImproperlyConfigured, match="VONAGE_API_KEY"):
        VonageGateway(CONFIG, api_key=FAKE_API_KEY)


# --- settings -------------------------------------------------------------------------


def test_get_gateway_builds_a_vonage_gateway_from_settings(
    settings: Any, fake_verify: FakeVerifyServer
) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = "two_factor.gateways.vonage.client.VonageGateway"
    settings.TWO_FACTOR_BRAND = "PollstrTest"
    settings.VONAGE_API_KEY = FAKE_API_KEY
    settings.VONAGE_API_SECRET = FAKE_API_SECRET
    settings.VONAGE_APPLICATION_ID = ""
    settings.VONAGE_PRIVATE_KEY = ""
    settings.VONAGE_API_HOST = fake_verify.host
    settings.VONAGE_TIMEOUT = 2

    gateway = get_gateway()
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert isinstance(gateway, VonageGateway)
    assert gateway.config.request_timeout == 2
    assert fake_verify.requests_log[0].json["brand"] == "PollstrTest"


def test_get_gateway_without_vonage_credentials_is_improperly_configured(
    settings: Any,
) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = "two_factor.gateways.vonage.client.VonageGateway"
    settings.VONAGE_API_KEY = ""
    settings.VONAGE_API_SECRET = ""
    settings.VONAGE_APPLICATION_ID = ""
    settings.VONAGE_PRIVATE_KEY = ""

    with pytest.raises(ImproperlyConfigured):
        get_gateway()


def test_the_sdk_timeout_is_whole_seconds_and_never_none(fake_verify: FakeVerifyServer) -> None:
    gateway = VonageGateway(
        GatewayConfig(request_timeout=0.2), api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET
    )

    options = gateway._client().http_client.http_client_options

    assert options.timeout == 1
    assert options.max_retries == 1


# --- the status table (the sandbox answers through it too) ----------------------------


@pytest.mark.parametrize(
    ("status", "operation", "error"),
    [
        (400, "check", InvalidCode),
        (400, "start", GatewayMisconfigured),
        (401, "start", GatewayMisconfigured),
        (402, "start", InsufficientBalance),
        (404, "check", RequestNotFound),
        (409, "start", ConcurrentRequest),
        (409, "next_channel", NoMoreChannels),
        (409, "check", StepTakesNoCode),
        (410, "check", TooManyAttempts),
        (418, "start", PermanentGatewayError),
        (429, "check", TransientGatewayError),
        (503, "cancel", TransientGatewayError),
    ],
)
def test_each_verify_status_maps_to_one_gateway_error(
    status: int, operation: str, error: type[Exception]
) -> None:
    assert type(error_from_problem(status, {}, operation=operation)) is error


def _fresh_gateway(fake_verify: FakeVerifyServer) -> VonageGateway:
    # What get_gateway() does for every task: a new gateway object.
    return VonageGateway(
        CONFIG, api_key=FAKE_API_KEY, api_secret=FAKE_API_SECRET, api_host=fake_verify.host
    )


def test_calls_from_one_thread_reuse_one_tls_connection(fake_verify: FakeVerifyServer) -> None:
    for index in range(3):
        request_id = _fresh_gateway(fake_verify).start(
            number=f"+3361234567{index}", client_ref=CLIENT_REF, workflow=default_workflow()
        )
        _fresh_gateway(fake_verify).check(
            request_id=request_id, code=fake_verify.code_for(request_id)
        )

    assert fake_verify.handshakes == 1


def test_each_thread_has_its_own_client_and_connection(fake_verify: FakeVerifyServer) -> None:
    import threading

    clients: list[object] = []

    def work(index: int) -> None:
        gateway = _fresh_gateway(fake_verify)
        gateway.start(
            number=f"+3361234568{index}", client_ref=CLIENT_REF, workflow=default_workflow()
        )
        clients.append(gateway._client())

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)

    assert len({id(client) for client in clients}) == 3  # never shared across threads
    assert fake_verify.handshakes == 3
