"""/metrics: Prometheus text that counts a whole verification, for allowed clients only."""

from __future__ import annotations

from typing import Any

import pytest
from channels.testing import WebsocketCommunicator
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from pollstr.metrics import WebsocketConnectionsMiddleware, reason_label
from tests.phone_numbers import NUMBER
from two_factor.gateways.sandbox import sandbox_fail_next, sandbox_messages_for
from two_factor.models import Status, Verification

TOKEN = "metrics-test-token-0123456789"


def scrape(client: Client, **extra: Any) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    response = client.get("/metrics", **extra)
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/plain; version=")
    samples = {}
    for family in text_string_to_metric_families(response.content.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[Any, float], name: str, **labels: str) -> float:
    """Sum of the samples of ``name`` whose labels include ``labels``."""
    return sum(
        value
        for (sample, sample_labels), value in samples.items()
        if sample == name and set(labels.items()) <= set(sample_labels)
    )


def verify_by_the_pages(client: Client, capture: Any) -> Verification:
    """The voter's whole flow: number, code by SMS, the right code, completion."""
    with capture(execute=True):
        response = client.post("/2fa/", {"number": NUMBER})
    verification = Verification.objects.get(pk=response["Location"].split("/")[3])
    code = sandbox_messages_for(NUMBER)[0]["code"]
    with capture(execute=True):
        client.post(f"/2fa/v/{verification.pk}/code/", {"code": code})
    with capture(execute=True):
        client.get(f"/2fa/v/{verification.pk}/complete/")
    verification.refresh_from_db()
    return verification


@pytest.mark.usefixtures("eager_tasks")
def test_metrics_count_a_full_verification(
    logged_in_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    before = scrape(logged_in_client)

    verification = verify_by_the_pages(logged_in_client, django_capture_on_commit_callbacks)

    assert verification.status == Status.CONSUMED
    after = scrape(logged_in_client)
    name = "pollstr_verifications_total"
    for event, channel in [("started", "none"), ("sent", "sms"), ("verified", "sms")]:
        change = total(after, name, event=event, channel=channel) - total(
            before, name, event=event, channel=channel
        )
        assert change == 1, event
    latency = "pollstr_provider_request_seconds_count"
    for operation in ("start", "check"):
        change = total(after, latency, operation=operation, outcome="ok") - total(
            before, latency, operation=operation, outcome="ok"
        )
        assert change == 1, operation
    assert ("pollstr_celery_queue_length", (("queue", "celery"),)) in after


# Transactional: a retried task may reconnect to the database, which a test's atomic
# block would refuse.
@pytest.mark.usefixtures("eager_retries", "transactional_db")
def test_a_transient_provider_error_counts_an_error_and_a_retry(
    logged_in_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    before = scrape(logged_in_client)
    sandbox_fail_next("start")

    with django_capture_on_commit_callbacks(execute=True):
        logged_in_client.post("/2fa/", {"number": NUMBER})

    after = scrape(logged_in_client)
    errors = "pollstr_provider_errors_total"
    labels = {"operation": "start", "error": "TransientGatewayError"}
    assert total(after, errors, **labels) - total(before, errors, **labels) == 1
    retries = "pollstr_task_retries_total"
    task = {"task": "two_factor.send_code"}
    assert total(after, retries, **task) - total(before, retries, **task) == 1


def test_metrics_are_refused_to_an_address_not_allowed(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = ["127.0.0.1", "10.1.0.0/16"]

    assert client.get("/metrics", REMOTE_ADDR="203.0.113.9").status_code == 403
    assert client.get("/metrics", REMOTE_ADDR="10.1.4.2").status_code == 200
    assert client.get("/metrics", REMOTE_ADDR="127.0.0.1").status_code == 200


def test_metrics_need_the_right_bearer_token(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = TOKEN
    settings.METRICS_ALLOWED_IPS = []
    remote = {"REMOTE_ADDR": "203.0.113.9", "HTTP_HOST": "web:8000"}

    refused = client.get("/metrics", **remote)
    assert refused.status_code == 403
    assert b"pollstr_" not in refused.content
    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong", **remote).status_code == 403
    assert client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}", **remote).status_code == 403
    allowed = client.get("/metrics", HTTP_AUTHORIZATION=f"Bearer {TOKEN}", **remote)
    assert allowed.status_code == 200
    assert b"pollstr_verifications_total" in allowed.content


def test_without_a_token_setting_no_bearer_is_accepted(client: Client, settings: Any) -> None:
    settings.METRICS_TOKEN = ""
    settings.METRICS_ALLOWED_IPS = []

    assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer ").status_code == 403


@pytest.mark.parametrize(
    ("reason", "label"),
    [
        ("sent by SMS via sandbox", "sent by sms via sandbox"),
        ("gave up: We couldn't reach the SMS provider.", "gave up"),
        ("too many wrong codes (local count)", "too many wrong codes"),
        ("", "none"),
        ("retry 3 of 5", "retry # of #"),
    ],
)
def test_reasons_become_short_bounded_labels(reason: str, label: str) -> None:
    assert reason_label(reason) == label


async def _accepting_app(scope: Any, receive: Any, send: Any) -> None:
    """A bare ASGI websocket app: accept, then wait for the client to leave."""
    assert (await receive())["type"] == "websocket.connect"
    await send({"type": "websocket.accept"})
    while (await receive())["type"] != "websocket.disconnect":
        pass


def _open_websockets() -> float:
    from pollstr.metrics import WEBSOCKETS_OPEN

    return WEBSOCKETS_OPEN._value.get()


@pytest.mark.asyncio
async def test_open_websockets_are_counted_until_they_close() -> None:
    application = WebsocketConnectionsMiddleware(_accepting_app)
    before = _open_websockets()

    first = WebsocketCommunicator(application, "/ws/")
    second = WebsocketCommunicator(application, "/ws/")
    assert (await first.connect())[0]
    assert (await second.connect())[0]
    assert _open_websockets() == before + 2

    await first.disconnect()
    await second.disconnect()
    assert _open_websockets() == before
