"""What only the sandbox gateway does: its dev inbox, server log, fault injection and a
store shared between processes. What every gateway does is in test_gateway_contract.py."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import uuid
from typing import Any

import pytest

from tests.phone_numbers import NUMBER, OTHER_NUMBER, provider_digits
from tests.two_factor.verifications import default_workflow, latest_code
from two_factor.gateways import (
    GatewayConfig,
    RequestNotFound,
    TransientGatewayError,
    VerifyGateway,
    get_gateway,
)
from two_factor.gateways.sandbox import (
    SandboxGateway,
    sandbox_fail_next,
    sandbox_inbox,
    sandbox_inbox_clear,
    sandbox_messages_for,
)

CLIENT_REF = uuid.uuid4().hex


@pytest.fixture(autouse=True)
def sandbox_settings(settings: Any) -> Any:
    # A fresh locmem cache per test: nothing leaks between tests.
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
            "LOCATION": f"sandbox-test-{uuid.uuid4().hex}",
        }
    }
    settings.TWO_FACTOR_GATEWAY_CLASS = "two_factor.gateways.sandbox.SandboxGateway"
    settings.TWO_FACTOR_SANDBOX_LATENCY = 0
    settings.TWO_FACTOR_SANDBOX_FAILURE_RATE = 0
    return settings


@pytest.fixture
def gateway() -> SandboxGateway:
    return SandboxGateway(GatewayConfig(code_length=6, channel_timeout=60))


def test_get_gateway_returns_a_new_sandbox_each_time(settings: Any) -> None:
    settings.TWO_FACTOR_CODE_LENGTH = 8

    first, second = get_gateway(), get_gateway()

    assert isinstance(first, SandboxGateway)
    assert isinstance(first, VerifyGateway)
    assert first is not second
    assert first.config.code_length == 8


def test_start_puts_the_code_in_the_inbox_and_the_server_log(
    gateway: SandboxGateway, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="two_factor.sandbox"):
        request_id = gateway.start(
            number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow()
        )

    [message] = sandbox_inbox()
    assert message["request_id"] == request_id
    assert message["to"] == provider_digits(NUMBER)
    assert message["channel"] == "sms"
    assert len(message["code"]) == 6
    assert message["code"] in caplog.text
    assert NUMBER in caplog.text


@pytest.mark.parametrize(
    ("locale", "wording"),
    [
        ("en-us", "Your Pollstr verification code is: {code}"),
        ("fr-fr", "Votre code de vérification Pollstr est : {code}"),
        ("es-es", "Tu código de verificación de Pollstr es: {code}"),
    ],
)
def test_the_sms_is_written_in_the_voters_locale(locale: str, wording: str) -> None:
    gateway = SandboxGateway(GatewayConfig(code_length=6, webotp_host="pollstr.example"))

    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow(), locale=locale)

    [message] = sandbox_inbox()
    code = message["code"]
    assert message["locale"] == locale
    # Verify's wording in that language, and the WebOTP line (the same in every language).
    assert message["text"] == f"{wording.format(code=code)}\n\n@pollstr.example #{code}"


def test_the_voice_call_appears_in_the_inbox_once_the_sms_step_times_out(clock) -> None:
    gateway = SandboxGateway(GatewayConfig(channel_timeout=60), clock=clock)
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    clock.advance(60)

    assert [m["channel"] for m in gateway.inbox()] == ["voice", "sms"]
    clock.advance(60)
    with pytest.raises(RequestNotFound):
        gateway.check(request_id=request_id, code=gateway.inbox()[0]["code"])


def test_a_request_started_by_one_gateway_is_checked_by_another() -> None:
    # What a Celery worker (start) and a web process (check) do, sharing the cache.
    request_id = get_gateway().start(
        number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow()
    )

    get_gateway().check(request_id=request_id, code=latest_code())

    with pytest.raises(RequestNotFound):
        get_gateway().check(request_id=request_id, code=latest_code())


def test_the_inbox_keeps_the_newest_50_messages_and_can_be_cleared(
    gateway: SandboxGateway,
) -> None:
    request_ids = [
        gateway.start(number=f"+3361234{i:04d}", client_ref=CLIENT_REF, workflow=default_workflow())
        for i in range(55)
    ]

    inbox = sandbox_inbox(limit=100)
    assert len(inbox) == 50
    assert inbox[0]["request_id"] == request_ids[-1]
    assert len(sandbox_inbox()) == 20
    sandbox_inbox_clear()
    assert sandbox_inbox() == []


def test_messages_for_a_number_leave_out_other_numbers(gateway: SandboxGateway) -> None:
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    gateway.start(number=OTHER_NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert [m["to"] for m in sandbox_messages_for(OTHER_NUMBER)] == [provider_digits(OTHER_NUMBER)]
    assert [m["to"] for m in sandbox_messages_for(provider_digits(NUMBER))] == [
        provider_digits(NUMBER)
    ]


def test_fail_next_fails_exactly_that_many_calls_of_that_operation(
    gateway: SandboxGateway,
) -> None:
    sandbox_fail_next("start", times=2)

    for _ in range(2):
        with pytest.raises(TransientGatewayError):
            gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    assert sandbox_inbox() == []
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    gateway.check(request_id=request_id, code=latest_code())


def test_fail_next_check_leaves_the_code_usable_afterwards(gateway: SandboxGateway) -> None:
    request_id = gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())
    sandbox_fail_next("check", times=1)

    with pytest.raises(TransientGatewayError) as failed:
        gateway.check(request_id=request_id, code=latest_code())

    assert failed.value.message == "We couldn't reach our verification provider. We'll keep trying."
    gateway.check(request_id=request_id, code=latest_code())


def test_fail_next_refuses_an_unknown_operation() -> None:
    with pytest.raises(ValueError, match="operation"):
        sandbox_fail_next("send", times=1)


def test_a_failure_rate_of_one_fails_every_call(settings: Any, gateway: SandboxGateway) -> None:
    settings.TWO_FACTOR_SANDBOX_FAILURE_RATE = 1

    for _ in range(5):
        with pytest.raises(TransientGatewayError):
            gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())


def test_a_failure_rate_of_a_half_fails_some_calls_but_not_all(
    settings: Any, gateway: SandboxGateway
) -> None:
    settings.TWO_FACTOR_SANDBOX_FAILURE_RATE = 0.5
    outcomes = []
    for i in range(200):
        try:
            gateway.start(
                number=f"+3361234{i:04d}", client_ref=CLIENT_REF, workflow=default_workflow()
            )
            outcomes.append(True)
        except TransientGatewayError:
            outcomes.append(False)

    assert 40 < outcomes.count(False) < 160


def test_latency_delays_every_call(settings: Any, gateway: SandboxGateway) -> None:
    settings.TWO_FACTOR_SANDBOX_LATENCY = 0.2

    began = time.monotonic()
    gateway.start(number=NUMBER, client_ref=CLIENT_REF, workflow=default_workflow())

    assert time.monotonic() - began >= 0.2


def test_concurrent_starts_from_threads_lose_no_request(gateway: SandboxGateway) -> None:
    request_ids: list[str] = []

    def start(i: int) -> None:
        request_ids.append(
            gateway.start(
                number=f"+3361234{i:04d}", client_ref=CLIENT_REF, workflow=default_workflow()
            )
        )

    threads = [threading.Thread(target=start, args=(i,)) for i in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert len(set(request_ids)) == 20
    assert {m["request_id"] for m in sandbox_inbox(limit=50)} == set(request_ids)
    assert sorted(gateway.store.get("index") or []) == sorted(request_ids)


WORKER_SCRIPT = """
import sys, django
django.setup()
from two_factor.gateways.sandbox import SandboxGateway
from two_factor.gateways import TransientGatewayError
from tests.two_factor.verifications import default_workflow
gateway = SandboxGateway()
try:
    gateway.start(number=sys.argv[1], client_ref="worker", workflow=default_workflow())
except TransientGatewayError:
    print("transient")
print(gateway.start(number=sys.argv[1], client_ref="worker", workflow=default_workflow()))
"""


@pytest.mark.redis
def test_another_process_sharing_redis_sends_the_code_this_process_checks(
    settings: Any,
) -> None:
    redis = pytest.importorskip("redis")
    url = os.environ.get("SANDBOX_TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url).ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {url}")
    prefix = f"sandbox-test-{uuid.uuid4().hex}"
    settings.CACHES = {
        "default": {
            "BACKEND": "pollstr.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": prefix,
        }
    }
    sandbox_fail_next("start", times=1)  # consumed by the other process
    try:
        worker = subprocess.run(
            [sys.executable, "-c", WORKER_SCRIPT, NUMBER],
            env=os.environ | {"REDIS_URL": url, "CACHE_KEY_PREFIX": prefix},
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        failed, request_id = worker.stdout.split()

        assert failed == "transient"
        SandboxGateway().check(request_id=request_id, code=latest_code())
        with pytest.raises(RequestNotFound):
            SandboxGateway().check(request_id=request_id, code=latest_code())
    finally:
        client = redis.Redis.from_url(url)
        for key in client.scan_iter(f"{prefix}:*"):
            client.delete(key)
