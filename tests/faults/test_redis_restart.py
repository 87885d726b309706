"""Redis restarts under a running stack: the worker stays up, pages and sockets recover.

A private ``redis-server`` (never the shared one) on a free port is the broker, cache and
channel layer of a real Celery worker, a real daphne and Celery beat (the reconciler's
sweep), with an append-only file as docker-compose.yml runs it. When Redis restarts, the
worker holds retries waiting for their countdown (unacknowledged, with an eta): the case
that made kombu's Redis transport end the worker (see pollstr/kombu_fixes.py).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import connect

from pollstr.celery import app as celery_app
from tests import stack
from tests.conftest import PASSWORD
from two_factor import services
from two_factor.gateways.sandbox import sandbox_fail_next
from two_factor.models import Status, Verification, VerificationEvent

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.timeout(150)]

PREFIX = f"{stack.SESSION_PREFIX}-restart"
IN_FLIGHT = 3
REDIS_DOWN_SECONDS = 3.0
SETTLED = {Status.SENT, Status.FAILED}
SWEEP_SLACK = timedelta(seconds=2)


class PrivateRedis:
    """A redis-server child on a free loopback port, restartable on the same port and
    append-only file (what the compose ``redis`` service runs)."""

    def __init__(self, directory: Path) -> None:
        self.port = stack.free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.starts += 1
        log = (self.directory / f"redis-{self.starts}.log").open("wb")
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port", str(self.port),
                "--bind", "127.0.0.1",
                "--save", "",
                "--appendonly", "yes",
                "--dir", str(self.directory),
                "--daemonize", "no",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        log.close()
        stack.wait_for(lambda: stack.redis_ping(self.url), what=f"redis on {self.port}", timeout=10)

    def stop(self) -> None:
        """SIGTERM (Redis flushes its append-only file and exits), SIGKILL if it hangs."""
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def restart(self, *, down_for: float) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()


@dataclass
class Stack:
    redis: PrivateRedis
    worker: stack.Worker
    web: stack.WebServer
    beat: stack.ChildProcess


# Retries wait long enough to still be held (unacked, with an eta) when Redis restarts;
# short task limits and sweeps keep the reconciler's deadlines inside the test's budget.
CHILD_SETTINGS = {
    "TASK_RETRY_BASE_DELAY": "8",
    "TASK_RETRY_MAX_DELAY": "10",
    "CELERY_TASK_SOFT_TIME_LIMIT": "3",
    "CELERY_TASK_TIME_LIMIT": "4",
    "TWO_FACTOR_RECONCILE_INTERVAL": "2",
}


@pytest.fixture
def private_stack(transactional_db: None, settings: Any) -> Iterator[Stack]:
    if not connection.settings_dict["ENGINE"].endswith("postgresql"):
        pytest.skip("the worker and daphne are separate processes: they need PostgreSQL")
    with ExitStack() as cleanup:
        directory = Path(cleanup.enter_context(tempfile.TemporaryDirectory(prefix="redis-")))
        redis = PrivateRedis(directory)
        redis.start()
        cleanup.callback(redis.stop)
        # This process enqueues, caches and publishes into the same private Redis.
        for name, value in stack.redis_settings(redis_url=redis.url, prefix=PREFIX).items():
            setattr(settings, name, value)
        for name, value in CHILD_SETTINGS.items():
            setattr(settings, name, float(value))
        cleanup.enter_context(stack.celery_broker(celery_app, redis_url=redis.url, prefix=PREFIX))
        env = stack.stack_env(
            database_url=stack.database_url(connection.settings_dict),
            redis_url=redis.url,
            prefix=PREFIX,
            extra=CHILD_SETTINGS,
        )
        worker = cleanup.enter_context(stack.celery_worker(env, name="restart"))
        web = cleanup.enter_context(stack.daphne_server(env))
        beat = cleanup.enter_context(celery_beat(env, directory))
        yield Stack(redis=redis, worker=worker, web=web, beat=beat)


@contextmanager
def celery_beat(env: dict[str, str], directory: Path) -> Iterator[stack.ChildProcess]:
    """Celery beat, which runs the reconciler's sweep every TWO_FACTOR_RECONCILE_INTERVAL."""
    argv = [sys.executable, "-m", "celery", "-A", "pollstr", "beat", "--loglevel=INFO",
            f"--schedule={directory / 'beat-schedule'}"]  # fmt: skip
    child = stack.ChildProcess("celery-beat", argv, env)
    try:
        child.wait_until(lambda: "beat: Starting" in child.log_text(), what="beat to start")
        yield child
    finally:
        child.stop()
        child.discard_log()


def start_verification(username: str, number: str) -> tuple[Verification, Client]:
    """What the /2fa/ view does for a logged-in browser: store the number, queue a send."""
    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    browser = Client()
    browser.force_login(user)
    typed = services.number_accept(user=user, raw_number=number)
    verification = services.verification_start(
        user=user, session_key=browser.session.session_key, ip="127.0.0.1", number=typed
    )
    return verification, browser


def wait_until_settled(
    verification: Verification, worker: stack.Worker, *, timeout: float = 30
) -> Verification:
    def settled() -> Verification | None:
        row = Verification.objects.get(pk=verification.pk)
        return row if row.status in SETTLED else None

    return stack.wait_for(
        settled, what=f"{verification.pk} sent or failed", timeout=timeout, log=worker.log_text
    )


def socket_url(web: stack.WebServer, verification: Verification) -> str:
    return web.url.replace("http://", "ws://") + f"/ws/2fa/{verification.pk}/"


def open_socket(web: stack.WebServer, verification: Verification, browser: Client) -> Any:
    return connect(
        socket_url(web, verification),
        origin=web.url,
        additional_headers={"Cookie": f"sessionid={browser.cookies['sessionid'].value}"},
        proxy=None,
        open_timeout=2,
    )


def first_status_within(
    seconds: float, web: stack.WebServer, verification: Verification, browser: Client
) -> str:
    """Reconnect like the page does until a status frame arrives, for at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            with open_socket(web, verification, browser) as socket:
                return str(socket.recv(timeout=2))
        except (OSError, TimeoutError, ConnectionClosed, InvalidStatus):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def page(web: stack.WebServer, path: str, browser: Client) -> tuple[int, str]:
    request = urllib.request.Request(
        web.url + path, headers={"Cookie": f"sessionid={browser.cookies['sessionid'].value}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def test_after_a_redis_restart_the_worker_pages_sockets_and_retries_all_recover(
    private_stack: Stack,
) -> None:
    worker, web, redis = private_stack.worker, private_stack.web, private_stack.redis
    watched, browser = start_verification("watcher", "+33612345670")
    assert wait_until_settled(watched, worker).status == Status.SENT
    # Every send of these fails once: each retry waits in the worker, unacked, with an eta.
    sandbox_fail_next("start", IN_FLIGHT)
    in_backoff = [
        start_verification(f"voter{n}", f"+3361234567{n + 1}")[0] for n in range(IN_FLIGHT)
    ]
    stack.wait_for(
        lambda: worker.log_text().count("Retry in") >= IN_FLIGHT,
        what="the retries to be held by the worker",
        log=worker.log_text,
    )

    with open_socket(web, watched, browser) as socket:
        assert 'data-status="sent"' in str(socket.recv(timeout=5))
        redis.restart(down_for=REDIS_DOWN_SECONDS)
    back_at = time.monotonic()

    # The page's socket reconnects and shows the current state at once.
    assert 'data-status="sent"' in first_status_within(5, web, watched, browser)
    assert time.monotonic() - back_at < 5
    # The worker reconnected (it did not exit) and takes new work.
    after, _ = start_verification("after-restart", "+33612345679")
    assert wait_until_settled(after, worker).status == Status.SENT
    # Retries the restart dropped are re-driven by the reconciler: each row settles at the
    # latest one sweep after the deadline its retry recorded.
    sweep = timedelta(seconds=float(CHILD_SETTINGS["TWO_FACTOR_RECONCILE_INTERVAL"]))
    for verification in in_backoff:
        deadline = Verification.objects.get(pk=verification.pk).deadline_at
        row = wait_until_settled(verification, worker, timeout=40)
        assert deadline is None or row.updated_at <= deadline + sweep + SWEEP_SLACK, trail(row)
    assert worker.process.popen.poll() is None, worker.process.log_tail()
    assert "Unrecoverable error" not in worker.log_text()
    # Pages answer, including one that reads the database, the session and the cache.
    for path in ("/", "/accounts/login/", f"/2fa/v/{watched.pk}/"):
        status, body = page(web, path, browser)
        assert status == 200, (path, status, web.process.log_tail())
    assert 'data-status="sent"' in body


def trail(verification: Verification) -> list[tuple[str, str, str]]:
    events = VerificationEvent.objects.filter(verification=verification)
    return [(event.from_status, event.to_status, event.reason) for event in events]
