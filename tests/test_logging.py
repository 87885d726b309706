"""Structured logs: one line per state change and per provider call, carrying the
request id of the voter's web request, never the code and never the full number."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from pollstr.logs import JsonFormatter, RequestIdFilter, TextFormatter, log_event, request_id_bound
from tests.phone_numbers import NUMBER
from tests.test_metrics import verify_by_the_pages
from two_factor.gateways.sandbox import sandbox_messages_for

REQUEST_ID = "voter-req-7f3a9c21"


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """What the console handler prints with LOG_FORMAT=json, for the pollstr loggers."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    target = logging.getLogger("pollstr")
    target.addHandler(handler)
    saved_level = target.level
    target.setLevel(logging.INFO)
    yield stream
    target.removeHandler(handler)
    target.setLevel(saved_level)


def parsed(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


# Transactional: on_commit callbacks (the announcements, the eager tasks) run at the
# services' commit inside the request, as in production, not after the test's rollback.
@pytest.mark.usefixtures("eager_tasks", "transactional_db")
def test_every_transition_logs_one_line_with_the_request_id_and_no_secret(
    logged_in_client: Client, django_capture_on_commit_callbacks: Any, json_lines: io.StringIO
) -> None:
    logged_in_client.defaults["HTTP_X_REQUEST_ID"] = REQUEST_ID

    verification = verify_by_the_pages(logged_in_client, django_capture_on_commit_callbacks)

    lines = parsed(json_lines)
    transitions = [line for line in lines if line["message"] == "verification.transition"]
    # One line each (eager tasks may log the send before the "queued" announcement).
    assert sorted((line["from_status"], line["to_status"]) for line in transitions) == sorted(
        [
            ("none", "queued"),
            ("queued", "sending"),
            ("sending", "sent"),
            ("sent", "checking"),
            ("checking", "verified"),
            ("verified", "consumed"),
        ]
    )
    assert {line["verification"] for line in transitions} == {str(verification.pk)}
    assert {line["request_id"] for line in lines} == {REQUEST_ID}
    calls = [line for line in lines if line["message"] == "provider.call"]
    assert [(c["operation"], c["outcome"]) for c in calls] == [("start", "ok"), ("check", "ok")]
    assert all(
        c["latency_ms"] >= 0 and c["provider_request"] == verification.request_id for c in calls
    )

    code = sandbox_messages_for(NUMBER)[0]["code"]
    national = NUMBER.removeprefix("+44")
    for line in json_lines.getvalue().splitlines():
        assert code not in line
        assert national not in line
        assert NUMBER not in line
    assert transitions[0]["number"].endswith("3456")


def test_a_request_id_from_outside_is_kept_only_when_it_is_a_short_safe_token(
    client: Client,
) -> None:
    assert client.get("/healthz").has_header("X-Request-ID") is False  # probes skip it
    kept = client.get("/accounts/login/", HTTP_X_REQUEST_ID=REQUEST_ID)
    assert kept["X-Request-ID"] == REQUEST_ID

    for hostile in ['x" level=ERROR', "a" * 200, "short", "line\nbreak-123456"]:
        replaced = client.get("/accounts/login/", HTTP_X_REQUEST_ID=hostile)["X-Request-ID"]
        assert replaced != hostile
        assert replaced.isalnum()
        assert len(replaced) == 16


def test_text_lines_are_readable_with_the_fields_as_pairs() -> None:
    record = _record_of("verification.transition", to_status="sent", reason="sent by SMS")
    line = TextFormatter().format(record)

    assert f"[{REQUEST_ID}] verification.transition" in line
    assert 'to_status=sent reason="sent by SMS"' in line


def test_json_lines_are_one_object_each() -> None:
    record = _record_of("provider.call", operation="start", latency_ms=12.5)
    entry = json.loads(JsonFormatter().format(record))

    assert entry["request_id"] == REQUEST_ID
    assert entry["operation"] == "start"
    assert entry["latency_ms"] == 12.5
    assert entry["level"] == "INFO"
    assert entry["time"].endswith("+00:00")


def _record_of(event: str, **fields: Any) -> logging.LogRecord:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("pollstr.test")
    keep = Keep()
    keep.addFilter(RequestIdFilter())
    logger.addHandler(keep)
    try:
        with request_id_bound(REQUEST_ID):
            log_event(logger, event, **fields)
    finally:
        logger.removeHandler(keep)
    return records[0]


def test_a_hostile_host_is_one_warning_without_a_traceback(
    client: Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO):
        response = client.get("/accounts/login/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    hostile = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert len(hostile) == 1
    assert hostile[0].levelno == logging.WARNING
    assert hostile[0].exc_info is None
    assert "evil.example" in hostile[0].getMessage()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
