"""Operators' view of real processes: the request id crosses into the worker, the worker
exports its own metrics, and /readyz names a database nobody can reach."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction

from pollstr.logs import request_id_bound
from tests import stack
from tests.integration.conftest import requires_postgres
from two_factor import services
from two_factor.models import PhoneNumber, Status, Verification

pytestmark = [pytest.mark.integration, requires_postgres]

REQUEST_ID = "voter-grep-5b1e0d77"
TOKEN = "worker-metrics-token-4242"


def _start_verification() -> Verification:
    user = get_user_model().objects.create_user("grep-me", password="x-123456!")
    PhoneNumber.objects.create(user=user, number="+447911123456")
    with request_id_bound(REQUEST_ID), transaction.atomic():
        verification = services.verification_start(user=user, session_key="s" * 32, ip=None)
    return verification


def test_the_request_id_reaches_the_worker_and_its_provider_call(
    child_env: Callable[..., dict[str, str]],
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
    tmp_path: Path,
) -> None:
    prefix = f"{stack.SESSION_PREFIX}-operators"
    metrics_port = stack.free_port()
    env = child_env(
        prefix,
        LOG_FORMAT="json",
        WORKER_METRICS_PORT=str(metrics_port),
        METRICS_TOKEN=TOKEN,
        METRICS_ALLOWED_IPS="192.0.2.1",  # not loopback: the token is needed here
        PROMETHEUS_MULTIPROC_DIR=str(tmp_path),
    )
    use_redis_namespace(prefix)

    with stack.celery_worker(env, concurrency=2) as worker:
        verification = _start_verification()
        stack.wait_for(
            lambda: Verification.objects.get(pk=verification.pk).status == Status.SENT,
            what="the worker to send the code",
            log=worker.log_text,
        )
        worker.wait_for_log('"to_status": "sent"')
        metrics_url = f"http://127.0.0.1:{metrics_port}/metrics"
        refused, _ = stack.http_get(metrics_url)
        request = stack.urllib.request.Request(
            metrics_url, headers={"Authorization": f"Bearer {TOKEN}"}
        )
        with stack._opener.open(request, timeout=5) as response:
            exported = response.read().decode()
        log = worker.log_text()  # the file goes when the worker stops cleanly

    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    in_worker = [line for line in lines if line.get("verification") == str(verification.pk)]
    assert {(line["from_status"], line["to_status"]) for line in in_worker} >= {
        ("queued", "sending"),
        ("sending", "sent"),
    }
    calls = [line for line in lines if line.get("message") == "provider.call"]
    assert calls
    assert {line["request_id"] for line in [*in_worker, *calls]} == {REQUEST_ID}
    assert all("7911123456" not in json.dumps(line) for line in [*in_worker, *calls])

    # A prefork child counted these; the exporter in the worker's main process adds up
    # every child's values from the multiprocess directory.
    assert refused == 403
    sent = re.search(
        r'pollstr_verifications_total\{channel="sms",event="sent",[^}]*\} (\S+)', exported
    )
    assert sent, exported[:2000]
    assert float(sent.group(1)) == 1
    assert re.search(r'pollstr_provider_request_seconds_count\{[^}]*operation="start"', exported)


def test_readyz_names_a_database_nobody_can_reach(
    child_env: Callable[..., dict[str, str]], tmp_path: Path
) -> None:
    dead = f"postgres://postgres@127.0.0.1:{stack.free_port()}/pollstr"
    env = {**child_env(), "DATABASE_URL": dead, "HEALTH_CHECK_TIMEOUT": "2"}

    with stack.daphne_server(env) as web:
        status, body = stack.http_get(web.url + "/readyz", timeout=10)
        live, _ = stack.http_get(web.url + "/healthz")

    assert live == 200
    assert status == 503, body
    answer: dict[str, Any] = json.loads(body)
    assert "database" in answer["failed"]
    assert answer["checks"]["cache"]["ok"] is True
    assert str(dead.rsplit(":", 1)[1].split("/")[0]) not in body.decode()
    assert os.environ.get("DATABASE_URL") != dead  # the test process kept its own
