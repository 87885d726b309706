"""/healthz and /readyz: liveness without dependencies, readiness naming what is down.

Dependencies are real: the shared Redis for the healthy case, a private redis-server
that the test stops for the Redis outage, a database connection to a port nobody
listens on for the database outage.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection
from django.test import Client

from pollstr.celery import app as celery_app
from pollstr.health import heartbeat_write
from tests import stack


def _json(response: Any) -> dict[str, Any]:
    return json.loads(response.content)


def test_healthz_answers_any_host_without_touching_a_dependency(client: Client) -> None:
    # No database fixture: pytest-django would fail the test if the view touched it.
    response = client.get("/healthz", HTTP_HOST="10.9.8.7:8000")

    assert response.status_code == 200
    assert _json(response) == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_health_endpoints_are_not_behind_login_or_verification(client: Client, db: None) -> None:
    heartbeat_write(nodename="test@here")
    for path in ("/healthz", "/readyz"):
        response = client.get(path)
        assert response.status_code == 200, (path, response.content)
        assert response["Content-Type"] == "application/json"


def test_readyz_reports_each_check_with_its_time(client: Client, db: None) -> None:
    heartbeat_write(nodename="test@here")

    body = _json(client.get("/readyz"))

    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "cache", "channel_layer", "broker", "worker"}
    for name, check in body["checks"].items():
        assert check["ok"] is True, name
        assert 0 <= check["seconds"] < 3, name


def test_readyz_without_a_worker_heartbeat_is_503_naming_the_worker(
    client: Client, db: None
) -> None:
    from django.core.cache import cache

    cache.clear()
    response = client.get("/readyz")

    assert response.status_code == 503
    assert _json(response)["failed"] == ["worker"]
    assert _json(response)["checks"]["worker"]["error"] == "no worker heartbeat"


def test_readyz_names_the_database_when_it_is_unreachable(
    client: Client, db: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    if connection.vendor != "sqlite":
        pytest.skip(
            "PostgreSQL connections come from a pool opened before the test: "
            "tests/integration/test_operators.py starts a server on an unreachable database"
        )
    heartbeat_write(nodename="test@here")
    # The check opens a connection of its own (in its thread) from these settings; this
    # test's connection stays open and untouched.
    monkeypatch.setitem(connection.settings_dict, "NAME", "/nonexistent-dir/pollstr.sqlite3")

    response = client.get("/readyz")

    assert response.status_code == 503
    body = _json(response)
    assert body["failed"] == ["database"]
    assert body["checks"]["database"]["error"] == "OperationalError"


@pytest.fixture
def stopped_redis(settings: Any) -> Iterator[str]:
    """Cache, channel layer and broker on a private Redis, then that Redis stopped."""
    with stack.private_redis() as (url, redis_process):
        for name, value in stack.redis_settings(redis_url=url, prefix="readyz").items():
            setattr(settings, name, value)
        with stack.celery_broker(celery_app, redis_url=url, prefix="readyz"):
            heartbeat_write(nodename="test@here")
            redis_process.stop()
            yield url


@pytest.mark.redis
def test_readyz_names_redis_when_it_is_stopped(
    client: Client, db: None, stopped_redis: str, settings: Any
) -> None:
    settings.HEALTH_CHECK_TIMEOUT = 2

    response = client.get("/readyz")

    assert response.status_code == 503
    body = _json(response)
    assert {"cache", "channel_layer", "broker"} <= set(body["failed"])
    assert body["checks"]["database"]["ok"] is True
    # The public answer names the failing check, not the network behind it.
    port = stopped_redis.rsplit(":", 1)[1].split("/")[0]
    assert port not in response.content.decode()


@pytest.mark.redis
def test_readyz_is_ready_on_a_running_redis(client: Client, db: None, settings: Any) -> None:
    redis_url = stack.redis_url_for_tests()
    if not stack.redis_ping(redis_url):
        pytest.skip(f"needs Redis at TEST_REDIS_URL={redis_url}; run `make services`")
    prefix = f"{stack.SESSION_PREFIX}-readyz"
    for name, value in stack.redis_settings(redis_url=redis_url, prefix=prefix).items():
        setattr(settings, name, value)
    try:
        with stack.celery_broker(celery_app, redis_url=redis_url, prefix=prefix):
            heartbeat_write(nodename="test@here")
            response = client.get("/readyz")
    finally:
        stack.redis_delete_prefix(redis_url, prefix)

    assert response.status_code == 200, response.content
    body = _json(response)
    assert body["checks"]["broker"]["detail"] == "redis"
    assert body["checks"]["cache"]["detail"] == "RedisCache"
    assert body["checks"]["worker"]["ok"] is True


def test_a_stale_heartbeat_is_not_ready(client: Client, db: None, settings: Any) -> None:
    from django.core.cache import cache

    from pollstr.health import HEARTBEAT_CACHE_KEY

    cache.set(HEARTBEAT_CACHE_KEY, {"at": 0.0, "node": "gone@host"})
    response = client.get("/readyz")

    assert response.status_code == 503
    assert "last worker heartbeat" in _json(response)["checks"]["worker"]["error"]


def test_health_probes_are_not_logged_at_info() -> None:
    import logging

    from pollstr.logs import QuietPathsFilter

    quiet = QuietPathsFilter()
    probe = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.2:5000", "GET", "/healthz", "1.1", 200),
        None,
    )
    page = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("10.0.0.2:5000", "GET", "/polls/", "1.1", 200),
        None,
    )
    assert quiet.filter(probe) is False
    assert quiet.filter(page) is True
