"""Vonage Verify v2 status callbacks: the signed webhook and its mapping onto the state
machine, and the sandbox posting them over real HTTP."""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.fakes.verify_server import FakeVerifyServer
from tests.phone_numbers import NUMBER, give_phone
from tests.two_factor.verifications import create_verification, default_workflow
from two_factor.gateways.base import GatewayConfig
from two_factor.gateways.errors import Blocked
from two_factor.gateways.sandbox import SandboxGateway
from two_factor.gateways.sandbox.emulator import RuleViolation
from two_factor.gateways.sandbox.store import MemoryStore
from two_factor.gateways.vonage.callbacks import (
    MAX_BODY_BYTES,
    CallbackRefused,
    callback_body,
    callback_sign,
    callback_token_verify,
)
from two_factor.models import ProviderCallback, Status, Verification, VerificationEvent
from two_factor.outcomes import OUTCOMES

SECRET = "test-signature-secret-of-a-decent-length"
URL = reverse("two_factor:vonage_verify_webhook")
REQUEST_ID = "c11236f4-00bf-4b89-84ba-88b25df97315"


@pytest.fixture(autouse=True)
def webhook_settings(settings: Any) -> Any:
    settings.VONAGE_SIGNATURE_SECRET = SECRET
    settings.TWO_FACTOR_WEBHOOK_MAX_AGE = 300
    settings.TWO_FACTOR_WEBHOOK_BASE_URL = ""
    return settings


@pytest.fixture
def verification(user: User) -> Verification:
    return sms_sent(user)


def sms_sent(
    user: User,
    status: Status = Status.SENT,
    request_id: str = REQUEST_ID,
    workflow: list[str] | None = None,
) -> Verification:
    """A verification whose SMS step the provider runs as REQUEST_ID, moved to `status`."""
    now = timezone.now()
    return create_verification(
        user=user,
        status=status,
        request_id=request_id,
        workflow=workflow or ["sms", "voice"],
        channel="sms",
        sent_at=now,
        channel_deadline=now + timedelta(seconds=180),
    )


def summary(status: str, request_id: str = REQUEST_ID, **extra: Any) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "submitted_at": "2025-01-01T12:00:00.000Z",
        "status": status,
        "type": "summary",
        "channel_timeout": 180,
        "workflow": [
            {"channel": "sms", "initiated_at": "2025-01-01T12:00:00.000Z", "status": "completed"},
            {"channel": "voice", "status": "unused"},
        ],
        "finalized_at": "2025-01-01T12:00:30.000Z",
        "price": "0.05",
        **extra,
    }


def event(status: str, channel: str = "sms", request_id: str = REQUEST_ID) -> dict[str, Any]:
    return {
        "request_id": request_id,
        "triggered_at": "2025-01-01T12:00:30.000Z",
        "type": "event",
        "channel": channel,
        "status": status,
        "finalized_at": "2025-01-01T12:00:30.000Z",
    }


def token_for(body: bytes, secret: str = SECRET, **claims: Any) -> str:
    """A token as Vonage signs one; a claim given as None is left out."""
    defaults = {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }
    merged = {k: v for k, v in (defaults | claims).items() if v is not None}
    return jwt.encode(merged, secret, algorithm="HS256")


def post(client: Client, body: bytes, token: str | None) -> Any:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return client.post(URL, data=body, content_type="application/json", headers=headers)


def send(client: Client, payload: Any, **claims: Any) -> Any:
    body = json.dumps(payload).encode()
    return post(client, body, token_for(body, **claims))


def snapshot(verification: Verification) -> tuple[str, int, int]:
    """Status, events written since the row was created, callbacks stored."""
    verification.refresh_from_db()
    return (
        verification.status,
        verification.events.count() - 1,
        ProviderCallback.objects.count(),
    )


# --- a signed callback is applied once -------------------------------------------------------


def test_signed_summary_completed_verifies_a_sent_verification(
    client: Client, user: User, verification: Verification
) -> None:
    phone = give_phone(user, verified=False)

    response = send(client, summary("completed"))

    assert response.status_code == 200
    assert response.json() == {"result": "sent (sms) → verified"}
    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert verification.verified_at is not None
    phone.refresh_from_db()
    assert phone.verified_at is not None
    record = ProviderCallback.objects.get()
    assert (record.request_id, record.type, record.status) == (REQUEST_ID, "summary", "completed")
    assert record.verification == verification
    assert record.body == summary("completed")
    assert record.result == "sent (sms) → verified"


def test_repeated_summary_with_a_new_token_changes_nothing_the_second_time(
    client: Client, verification: Verification
) -> None:
    first = send(client, summary("completed"))
    second = send(client, summary("completed"))

    assert (first.status_code, second.status_code) == (200, 200)
    assert second.json()["result"] == "no change: the verification is verified"
    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert verification.events.filter(to_status=Status.VERIFIED).count() == 1
    assert ProviderCallback.objects.count() == 2


def test_the_same_token_replayed_is_refused_and_stores_nothing(
    client: Client, verification: Verification
) -> None:
    body = json.dumps(summary("failed")).encode()
    token = token_for(body)
    assert post(client, body, token).status_code == 200
    before = snapshot(verification)

    response = post(client, body, token)

    assert response.status_code == 409
    assert "error" in response.json()
    assert snapshot(verification) == before


def test_a_token_without_jti_is_identified_by_its_hash_and_cannot_be_replayed(
    client: Client, verification: Verification
) -> None:
    body = json.dumps(event("failed")).encode()
    token = token_for(body, jti=None)

    assert post(client, body, token).status_code == 200
    assert post(client, body, token).status_code == 409
    assert ProviderCallback.objects.get().token_id == hashlib.sha256(token.encode()).hexdigest()


def test_a_completed_callback_after_consumption_changes_nothing(client: Client, user: User) -> None:
    verification = sms_sent(user, status=Status.CONSUMED)

    response = send(client, event("completed"))

    assert response.status_code == 200
    assert response.json()["result"] == "no change: the verification is consumed"
    assert snapshot(verification)[:2] == (Status.CONSUMED, 0)


def test_a_failed_callback_never_undoes_a_verified_verification(client: Client, user: User) -> None:
    verification = sms_sent(user, status=Status.VERIFIED)

    assert send(client, summary("failed")).status_code == 200

    assert snapshot(verification)[:2] == (Status.VERIFIED, 0)


# --- refusals: nothing changes ------------------------------------------------------------


def rsa_private_key() -> bytes:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _valid_body() -> bytes:
    return json.dumps(summary("completed")).encode()


def _claims(body: bytes) -> dict[str, Any]:
    return {
        "iat": int(time.time()),
        "jti": str(uuid.uuid4()),
        "payload_hash": hashlib.sha256(body).hexdigest(),
    }


def _unsigned() -> tuple[bytes, str | None]:
    return _valid_body(), None


def _not_bearer() -> tuple[bytes, str | None]:
    return _valid_body(), "Basic " + "a" * 20


def _wrong_secret() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, token_for(body, secret="another-secret-of-a-decent-length-too")


def _alg_none() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, jwt.encode(_claims(body), "", algorithm="none")  # "none" takes no key


def _rs256() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, jwt.encode(_claims(body), rsa_private_key(), algorithm="RS256")


def _no_iat() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, token_for(body, iat=None)


def _old_iat() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, token_for(body, iat=int(time.time()) - 301)


def _future_iat() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, token_for(body, iat=int(time.time()) + 600)


def _expired() -> tuple[bytes, str | None]:
    body = _valid_body()
    return body, token_for(body, exp=int(time.time()) - 120)


def _tampered() -> tuple[bytes, str | None]:
    body = _valid_body()
    token = token_for(body)
    return json.dumps(summary("completed", price="0.00")).encode(), token


def _no_payload_hash() -> tuple[bytes, str | None]:
    # Signed with the right secret, but vouching for no body in particular.
    body = _valid_body()
    return body, token_for(body, payload_hash=None)


def _body_with(raw: bytes) -> tuple[bytes, str | None]:
    return raw, token_for(raw)


def _malformed_json() -> tuple[bytes, str | None]:
    return _body_with(b'{"request_id": "c11236f4", "status": ')


def _json_array() -> tuple[bytes, str | None]:
    return _body_with(json.dumps([summary("completed")]).encode())


def _missing_request_id() -> tuple[bytes, str | None]:
    payload = summary("completed")
    del payload["request_id"]
    return _body_with(json.dumps(payload).encode())


def _request_id_not_a_string() -> tuple[bytes, str | None]:
    return _body_with(json.dumps(summary("completed") | {"request_id": 42}).encode())


def _status_not_a_string() -> tuple[bytes, str | None]:
    return _body_with(json.dumps(summary("completed") | {"status": ["completed"]}).encode())


def _workflow_not_a_list() -> tuple[bytes, str | None]:
    return _body_with(json.dumps(summary("completed") | {"workflow": "voice"}).encode())


def _nan() -> tuple[bytes, str | None]:
    return _body_with(_valid_body().replace(b'"0.05"', b"NaN"))


def _oversized() -> tuple[bytes, str | None]:
    return _body_with(json.dumps(summary("completed", padding="x" * MAX_BODY_BYTES)).encode())


@pytest.mark.parametrize(
    ("make_request", "status"),
    [
        pytest.param(_unsigned, 401, id="unsigned"),
        pytest.param(_not_bearer, 401, id="not a bearer token"),
        pytest.param(_wrong_secret, 401, id="wrong secret"),
        pytest.param(_alg_none, 401, id="alg none"),
        pytest.param(_rs256, 401, id="RS256"),
        pytest.param(_no_iat, 401, id="no iat"),
        pytest.param(_old_iat, 401, id="iat older than the max age"),
        pytest.param(_future_iat, 401, id="iat in the future"),
        pytest.param(_expired, 401, id="past exp"),
        pytest.param(_tampered, 401, id="payload_hash mismatch"),
        pytest.param(_no_payload_hash, 401, id="a body without payload_hash"),
        pytest.param(_malformed_json, 400, id="malformed JSON"),
        pytest.param(_json_array, 400, id="JSON array"),
        pytest.param(_missing_request_id, 400, id="missing request_id"),
        pytest.param(_request_id_not_a_string, 400, id="request_id not a string"),
        pytest.param(_status_not_a_string, 400, id="status not a string"),
        pytest.param(_workflow_not_a_list, 400, id="workflow not a list"),
        pytest.param(_nan, 400, id="NaN"),
        pytest.param(_oversized, 413, id="oversized body"),
    ],
)
def test_a_refused_callback_answers_4xx_and_changes_nothing(
    client: Client, verification: Verification, make_request: Any, status: int
) -> None:
    before = snapshot(verification)
    body, token = make_request()

    response = post(client, body, token)

    assert response.status_code == status
    assert set(response.json()) == {"error"}
    assert snapshot(verification) == before == (Status.SENT, 0, 0)


def test_a_token_without_payload_hash_vouches_only_for_an_empty_body() -> None:
    def verify(body: bytes) -> str:
        token = token_for(body, payload_hash=None)
        return callback_token_verify(
            authorization=f"Bearer {token}", body=body, secret=SECRET, max_age=300
        )

    assert verify(b"")
    with pytest.raises(CallbackRefused) as refused:
        verify(_valid_body())
    assert refused.value.status == 401
    assert "payload_hash" in refused.value.message


def test_get_is_refused_with_405(client: Client, verification: Verification) -> None:
    response = client.get(URL, headers={"Authorization": f"Bearer {token_for(b'')}"})

    assert response.status_code == 405
    assert response["Allow"] == "POST"
    assert snapshot(verification) == (Status.SENT, 0, 0)


def test_without_a_signature_secret_every_callback_is_refused(
    client: Client, verification: Verification, settings: Any
) -> None:
    body = _valid_body()
    token = token_for(body)
    settings.VONAGE_SIGNATURE_SECRET = ""

    assert post(client, body, token).status_code == 503
    assert post(client, body, None).status_code == 503
    assert snapshot(verification) == (Status.SENT, 0, 0)


def test_the_webhook_needs_no_csrf_token(verification: Verification) -> None:
    strict = Client(enforce_csrf_checks=True)

    assert send(strict, summary("completed")).status_code == 200


# --- the mapping -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "status", "failure_reason"),
    [
        pytest.param(event("completed"), Status.VERIFIED, "", id="event completed"),
        pytest.param(summary("failed"), Status.FAILED, "Ask for a new code", id="summary failed"),
        pytest.param(event("failed"), Status.FAILED, "Ask for a new code", id="event failed"),
        pytest.param(
            summary("expired"), Status.EXPIRED, OUTCOMES["expired"].sentence, id="summary expired"
        ),
        pytest.param(
            summary("blocked"), Status.FAILED, Blocked.default_message, id="summary blocked"
        ),
        pytest.param(event("blocked"), Status.FAILED, Blocked.default_message, id="event blocked"),
        pytest.param(
            event("user_rejected"),
            Status.FAILED,
            OUTCOMES["user_rejected"].sentence,
            id="event user_rejected",
        ),
        pytest.param(event("rejected"), Status.FAILED, "refused", id="event rejected"),
    ],
)
def test_each_final_status_maps_onto_the_state_machine(
    client: Client,
    verification: Verification,
    payload: dict[str, Any],
    status: Status,
    failure_reason: str,
) -> None:
    response = send(client, payload)

    assert response.status_code == 200
    verification.refresh_from_db()
    assert verification.status == status
    assert failure_reason in verification.failure_reason
    # One event after the creation's: the callback's.
    assert [event.reason for event in verification.events.all()][1:] == [
        f"provider callback: {payload['type']} {payload['status']}"
    ]


def test_blocked_is_named_in_the_stored_result(client: Client, verification: Verification) -> None:
    send(client, summary("blocked"))

    assert ProviderCallback.objects.get().result == "sent (sms) → failed (blocked)"


def test_a_callback_while_checking_a_code_settles_it(client: Client, user: User) -> None:
    verification = sms_sent(user, status=Status.CHECKING)

    send(client, event("completed"))

    assert snapshot(verification)[:2] == (Status.VERIFIED, 1)


def test_a_summary_showing_the_voice_step_started_moves_the_row_to_the_voice_step(
    client: Client, verification: Verification, settings: Any
) -> None:
    payload = summary("completed")
    payload["status"] = "in_progress"
    payload["workflow"] = [
        {"channel": "sms", "initiated_at": "2025-01-01T12:00:00.000Z", "status": "expired"},
        {"channel": "voice", "initiated_at": "2025-01-01T12:03:00.000Z", "status": "unused"},
    ]
    started = timezone.now()

    response = send(client, payload)

    assert response.json() == {"result": "sent (sms) → sent (voice)"}
    verification.refresh_from_db()
    assert (verification.status, verification.channel, verification.step) == (
        Status.SENT,
        "voice",
        1,
    )
    # The same deadline as the voice step the services start themselves.
    expected = started + timedelta(seconds=settings.TWO_FACTOR_CHANNEL_TIMEOUT)
    assert verification.channel_deadline is not None
    assert abs((verification.channel_deadline - expected).total_seconds()) < 5


def test_a_voice_event_shows_the_call_before_its_outcome(
    client: Client, verification: Verification
) -> None:
    response = send(client, event("completed", channel="voice"))

    assert response.json() == {"result": "sent (sms) → sent (voice) → verified"}
    assert list(verification.events.values_list("to_status", "channel")) == [
        (Status.SENT, "sms"),  # created
        (Status.SENT, "voice"),
        (Status.VERIFIED, "voice"),
    ]


def test_a_whatsapp_event_is_handled_like_any_other_step(client: Client, user: User) -> None:
    verification = sms_sent(user, workflow=["sms", "whatsapp", "voice"])

    response = send(client, event("completed", channel="whatsapp"))

    assert response.json() == {"result": "sent (sms) → sent (whatsapp) → verified"}
    verification.refresh_from_db()
    assert (verification.status, verification.channel, verification.step) == (
        Status.VERIFIED,
        "whatsapp",
        1,
    )


def test_an_event_for_a_channel_outside_the_workflow_moves_no_step(
    client: Client, verification: Verification
) -> None:
    response = send(client, event("failed", channel="whatsapp"))

    assert response.json()["result"].startswith("sent (sms) → failed")
    assert verification.events.filter(to_status=Status.SENT).count() == 1


def test_a_voice_step_while_checking_a_code_leaves_the_check_alone(
    client: Client, user: User
) -> None:
    verification = sms_sent(user, status=Status.CHECKING)
    payload = summary("in_progress")
    payload["workflow"][1]["initiated_at"] = "2025-01-01T12:03:00.000Z"

    send(client, payload)

    assert snapshot(verification)[:2] == (Status.CHECKING, 0)


def test_an_unknown_request_id_is_stored_and_ignored(
    client: Client, verification: Verification
) -> None:
    response = send(client, summary("completed", request_id=str(uuid.uuid4())))

    assert response.status_code == 200
    assert response.json()["result"].startswith("ignored")
    record = ProviderCallback.objects.get()
    assert record.verification is None
    assert snapshot(verification)[:2] == (Status.SENT, 0)


def test_client_ref_finds_a_verification_that_has_no_request_id_yet(
    client: Client, user: User
) -> None:
    verification = sms_sent(user, status=Status.SENDING, request_id="")
    client_ref = verification.pk.hex[:16]

    send(client, summary("blocked", request_id=str(uuid.uuid4()), client_ref=client_ref))

    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert verification.failure_reason == Blocked.default_message


def test_client_ref_is_ignored_when_the_verification_knows_another_request_id(
    client: Client, verification: Verification
) -> None:
    client_ref = verification.pk.hex[:16]

    response = send(client, summary("failed", request_id=str(uuid.uuid4()), client_ref=client_ref))

    assert response.json()["result"].startswith("ignored")
    assert snapshot(verification)[:2] == (Status.SENT, 0)


# --- sending: the sandbox posts signed callbacks -------------------------------------------


def test_a_sandbox_signed_token_is_bound_to_its_body() -> None:
    body = callback_body(event("completed"))
    claims = jwt.decode(callback_sign(body, SECRET), SECRET, algorithms=["HS256"])

    assert claims["payload_hash"] == hashlib.sha256(body).hexdigest()
    assert {"iat", "jti"} <= set(claims)


def test_the_sandbox_posts_nothing_unless_a_webhook_base_url_is_set(
    db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[Any] = []
    monkeypatch.setattr(
        "two_factor.gateways.sandbox.callbacks.callback_post", lambda *a, **k: posted.append(a)
    )
    gateway = SandboxGateway(GatewayConfig(), store=MemoryStore())
    request_id = gateway.start(
        number=NUMBER, client_ref=uuid.uuid4().hex, workflow=default_workflow()
    )

    gateway.check(request_id=request_id, code=gateway.inbox(1)[0]["code"])

    assert posted == []


def test_the_sandbox_survives_an_unreachable_webhook(db: None, settings: Any) -> None:
    settings.TWO_FACTOR_WEBHOOK_BASE_URL = "http://127.0.0.1:9"  # discard port: nobody there
    gateway = SandboxGateway(GatewayConfig(), store=MemoryStore())
    request_id = gateway.start(
        number=NUMBER, client_ref=uuid.uuid4().hex, workflow=default_workflow()
    )

    gateway.check(request_id=request_id, code=gateway.inbox(1)[0]["code"])

    assert gateway.emulator.status(request_id) == "completed"


def test_the_sandbox_posts_a_signed_callback_that_the_webhook_applies(
    live_server: Any, user: User, settings: Any
) -> None:
    settings.TWO_FACTOR_WEBHOOK_BASE_URL = live_server.url
    gateway = SandboxGateway(GatewayConfig(), store=MemoryStore())
    verification = sms_sent(user, status=Status.SENDING, request_id="")
    request_id = gateway.start(
        number=NUMBER, client_ref=verification.pk.hex, workflow=default_workflow()
    )
    Verification.objects.filter(pk=verification.pk).update(
        status=Status.SENT, request_id=request_id
    )

    gateway.check(request_id=request_id, code=gateway.inbox(1)[0]["code"])

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    records = list(ProviderCallback.objects.order_by("received_at", "id"))
    assert [(r.type, r.status) for r in records] == [
        ("event", "completed"),
        ("summary", "completed"),
    ]
    assert [r.result for r in records] == [
        "sent (sms) → verified",
        "no change: the verification is verified",
    ]
    assert {r.body["client_ref"] for r in records} == {verification.pk.hex[:16]}
    # The creation's event and the one the first callback wrote.
    assert VerificationEvent.objects.filter(verification=verification).count() == 2


def test_the_fake_verify_server_posts_signed_callbacks_too(live_server: Any, user: User) -> None:
    verification = sms_sent(user, request_id="")
    fake = FakeVerifyServer(callback_url=live_server.url + URL, signature_secret=SECRET)
    request_id = fake.emulator.start(
        to=NUMBER.removeprefix("+"), brand="Pollstr", client_ref=verification.pk.hex[:16]
    )
    Verification.objects.filter(pk=verification.pk).update(request_id=request_id)
    wrong = "0000" if fake.code_for(request_id) != "0000" else "1111"

    for _ in range(3):
        with pytest.raises(RuleViolation):
            fake.emulator.check(request_id, wrong)

    assert [(c["type"], c["status"]) for c in fake.callbacks] == [
        ("event", "failed"),
        ("summary", "failed"),
    ]
    verification.refresh_from_db()
    assert verification.status == Status.FAILED
    assert ProviderCallback.objects.filter(request_id=request_id).count() == 2


def test_silent_auth_pending_then_failed_moves_on_to_sms_and_never_fails_the_request(
    client: Client, user: User
) -> None:
    now = timezone.now()
    verification = create_verification(
        user=user,
        status=Status.SENT,
        request_id=REQUEST_ID,
        workflow=["silent_auth", "sms"],
        channel="silent_auth",
        sent_at=now,
        channel_deadline=now + timedelta(seconds=180),
    )
    pending = event("action_pending", channel="silent_auth")
    pending["action"] = {"type": "check", "check_url": "https://api.nexmo.com/v2/verify/x"}

    assert send(client, pending).json() == {"result": "no change: the verification is sent"}
    assert send(client, event("failed", channel="silent_auth")).json() == {
        "result": "sent (silent_auth) → sent (sms)"
    }

    verification.refresh_from_db()
    assert (verification.status, verification.channel, verification.step) == (
        Status.SENT,
        "sms",
        1,
    )
    assert verification.notice.startswith("Your mobile network couldn't confirm your number")
