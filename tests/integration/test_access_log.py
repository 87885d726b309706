"""Access logs under both servers Pollstr runs (daphne for `make run`, gunicorn with
uvicorn workers in docker-compose.yml): one line per request and websocket handshake,
carrying the request id, and none for the probes (pollstr/access_log.py)."""

from __future__ import annotations

import json
import shlex
import urllib.request
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from tests import stack
from tests.integration.conftest import requires_postgres

pytestmark = [pytest.mark.integration, requires_postgres]

SERVERS = {"daphne": stack.daphne_server, "gunicorn": stack.web_server}
PAGE_ID = "page-request-3c9e51aa"
SOCKET_ID = "socket-request-77d0e2b4"


def _get(url: str, **headers: str) -> int:
    request = urllib.request.Request(url, headers=headers)
    try:
        with stack._opener.open(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def _handshake(web: stack.WebServer) -> None:
    """A websocket to a path nobody serves: refused at the handshake (closed with 4404)."""
    url = web.url.replace("http://", "ws://") + "/ws/nowhere/"
    try:
        with connect(
            url,
            origin=web.url,
            additional_headers={"X-Request-ID": SOCKET_ID},
            proxy=None,
            open_timeout=5,
        ) as socket:
            socket.recv(timeout=5)
    except (ConnectionClosed, InvalidStatus):
        pass


@pytest.mark.parametrize("server", SERVERS)
def test_requests_are_logged_once_with_their_request_id_and_probes_never(
    server: str, child_env: Callable[..., dict[str, str]]
) -> None:
    env = child_env(LOG_FORMAT="json", METRICS_ALLOWED_IPS="127.0.0.1")
    with SERVERS[server](env) as web:
        for probe in ("/healthz", "/readyz", "/metrics"):
            assert _get(web.url + probe) in (200, 503)
        assert _get(web.url + "/accounts/login/", **{"X-Request-ID": PAGE_ID}) == 200
        _handshake(web)
        stack.wait_for(
            lambda: SOCKET_ID in web.log_text() and PAGE_ID in web.log_text(),
            what="the access-log lines",
            timeout=10,
            log=web.log_text,
        )
        log = web.log_text()

    lines: list[dict[str, Any]] = [
        json.loads(line) for line in log.splitlines() if line.startswith("{")
    ]
    access = [line for line in lines if line["message"] == "http.access"]
    page = [line for line in access if line["path"] == "/accounts/login/"]
    assert len(page) == 1, access
    assert page[0]["request_id"] == PAGE_ID
    assert page[0]["method"] == "GET"
    assert page[0]["status"] == 200
    assert page[0]["client"] == "127.0.0.1"
    assert page[0]["duration_ms"] >= 0
    [socket] = [line for line in access if line["path"] == "/ws/nowhere/"]
    assert socket["request_id"] == SOCKET_ID
    assert socket["status"] == 403
    # Nothing else logs a request: no probe, and no line of the server's own access log.
    for probe in ("/healthz", "/readyz", "/metrics"):
        assert probe not in log, f"{probe} was logged by {server}"
    assert [line for line in log.splitlines() if "/accounts/login/" in line] == [
        json.dumps(page[0], ensure_ascii=False)
    ]


def test_make_run_starts_daphne_as_the_tests_do() -> None:
    makefile = (stack.BASE_DIR / "Makefile").read_text().splitlines()
    [run] = [line.strip() for line in makefile if "/bin/daphne " in line]
    argv = shlex.split(run)
    assert argv[0] == "$(VENV)/bin/daphne"
    assert ["daphne", *argv[1:]] == stack.daphne_command(host="$(HOST)", port="$(PORT)")
