"""Start Pollstr's real processes for tests: the Celery worker, beat and the web servers.

The commands are the ones ``docker-compose.yml`` declares for its ``worker``, ``beat``
and ``web`` services (``tests/integration/test_compose.py`` holds them equal), run with
this virtualenv's interpreter (``python -m celery``, ``python -m gunicorn``) from the
project root; :func:`daphne_server` runs the single-process server of ``make run``.
Tests add only what makes a process addressable: the worker's ``--hostname`` and the
web server's host and port.

Children run in their own process group with their output in a log file. Every wait is
bounded and its error carries the child's log tail; leaving a ``with`` block stops the
whole group (SIGTERM, then SIGKILL), so no worker outlives its test.

Redis isolation: everything lives in the database of ``TEST_REDIS_URL`` (default
``redis://127.0.0.1:6379/15``) under a key prefix of its own, through the settings
``CACHE_KEY_PREFIX``, ``CHANNELS_PREFIX`` and ``CELERY_BROKER_KEY_PREFIX`` (kombu's
``global_keyprefix``: queues, bindings, unacked sets and the control mailbox). Nothing
is ever flushed: :func:`redis_delete_prefix` removes only the keys under one prefix, so
concurrent test runs and other users of that database are left alone.
"""

from __future__ import annotations

import atexit
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

BASE_DIR = Path(__file__).resolve().parent.parent
DEFAULT_TEST_REDIS_URL = "redis://127.0.0.1:6379/15"

STARTUP_TIMEOUT = 30.0
STOP_TIMEOUT = 10.0
POLL_INTERVAL = 0.1

# docker-compose.yml runs exactly these (test_compose.py compares them). The worker's pool
# and concurrency come from settings (CELERY_WORKER_POOL, CELERY_WORKER_CONCURRENCY);
# gunicorn's number of web workers from WEB_CONCURRENCY.
WORKER_COMMAND: tuple[str, ...] = (
    "celery",
    "-A",
    "pollstr",
    "worker",
    "--loglevel=INFO",
    "--without-gossip",
    "--without-mingle",
)
# docker-compose.yml's `worker-checks`: the same worker, serving only the checks queue.
CHECKS_WORKER_COMMAND: tuple[str, ...] = (*WORKER_COMMAND, "--queues=checks")
WEB_COMMAND: tuple[str, ...] = (
    "gunicorn",
    "--bind",
    "{host}:{port}",
    "--worker-class",
    "pollstr.web_server.UvicornWorker",
    "--graceful-timeout",
    "25",
    "--no-control-socket",
    "pollstr.asgi:application",
)
BEAT_COMMAND: tuple[str, ...] = (
    "celery",
    "-A",
    "pollstr",
    "beat",
    "--loglevel=INFO",
    "--schedule=/tmp/celerybeat-schedule",
)
FLOWER_COMMAND: tuple[str, ...] = ("celery", "-A", "pollstr", "flower", "--port=5555")
MIGRATE_COMMAND: tuple[str, ...] = ("python", "manage.py", "migrate", "--noinput")
# `make run`'s server: one process, HTTP and websockets. Its own access log is off:
# Pollstr writes one (pollstr/access_log.py).
DAPHNE_COMMAND: tuple[str, ...] = (
    "daphne",
    "--access-log",
    "/dev/null",
    "-b",
    "{host}",
    "-p",
    "{port}",
    "pollstr.asgi:application",
)

# One prefix per test session: keys from another run (or a crashed one) never collide.
SESSION_PREFIX = f"pollstr-test-{os.getpid()}-{secrets.token_hex(3)}"


class StackError(RuntimeError):
    """A child process did not start, answer or stop in time; the message has its log."""


def web_command(*, host: str, port: int | str) -> list[str]:
    return [part.format(host=host, port=port) for part in WEB_COMMAND]


def daphne_command(*, host: str, port: int | str) -> list[str]:
    return [part.format(host=host, port=port) for part in DAPHNE_COMMAND]


def worker_command(*, concurrency: int | None = None) -> list[str]:
    command = list(WORKER_COMMAND)
    if concurrency is not None:
        command.append(f"--concurrency={concurrency}")
    return command


def beat_command(*, schedule: str | Path | None = None) -> list[str]:
    """BEAT_COMMAND; ``schedule`` puts beat's state file elsewhere (one per test run)."""
    if schedule is None:
        return list(BEAT_COMMAND)
    return [
        f"--schedule={schedule}" if part.startswith("--schedule=") else part
        for part in BEAT_COMMAND
    ]


def free_port() -> int:
    """A TCP port nothing listens on right now (the child binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- Redis namespaces -------------------------------------------------------------------------


def redis_url_for_tests() -> str:
    return os.environ.get("TEST_REDIS_URL") or DEFAULT_TEST_REDIS_URL


def cache_key_prefix(prefix: str) -> str:
    return f"{prefix}:cache"


def channels_prefix(prefix: str) -> str:
    return f"{prefix}:asgi"


def broker_key_prefix(prefix: str) -> str:
    return f"{prefix}:celery:"


def redis_settings(*, redis_url: str, prefix: str = SESSION_PREFIX) -> dict[str, Any]:
    """Django settings that put the test process in the same Redis namespace as the
    children started with ``stack_env(redis_url=redis_url, prefix=prefix)``."""
    return {
        "CACHES": {
            "default": {
                "BACKEND": "pollstr.cache.RedisCache",
                "LOCATION": redis_url,
                "KEY_PREFIX": cache_key_prefix(prefix),
            }
        },
        "CHANNEL_LAYERS": {
            "default": {
                "BACKEND": "pollstr.channel_layers.RedisChannelLayer",
                "CONFIG": {"hosts": [redis_url], "prefix": channels_prefix(prefix)},
            }
        },
    }


def redis_ping(redis_url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping())
    except redis.RedisError:
        return False


def redis_delete_prefix(redis_url: str, prefix: str) -> int:
    """Delete the keys under ``prefix`` (and only those); return how many."""
    import redis

    client = redis.Redis.from_url(redis_url)
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{_glob_escape(prefix)}*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch.clear()
    if batch:
        deleted += client.delete(*batch)
    client.close()
    return deleted


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


@contextmanager
def celery_broker(app: Any, *, redis_url: str, prefix: str = SESSION_PREFIX) -> Iterator[None]:
    """Point the test process's Celery app at a worker's broker namespace, then restore.

    The app read its configuration from settings once; pytest-django's ``settings``
    fixture cannot reach it, so the broker is switched here, eager mode is turned off
    (tasks must reach the worker), and the cached connection pools (bound to the old
    broker) are dropped on the way in and out.
    """
    conf = app.conf
    saved = {
        "broker_url": conf.broker_url,
        "broker_transport_options": dict(conf.broker_transport_options or {}),
        "task_always_eager": conf.task_always_eager,
    }
    _drop_broker_pools(app)
    conf.broker_url = redis_url
    conf.broker_transport_options = {
        **saved["broker_transport_options"],
        "global_keyprefix": broker_key_prefix(prefix),
    }
    conf.task_always_eager = False
    try:
        yield
    finally:
        _drop_broker_pools(app)
        for name, value in saved.items():
            setattr(conf, name, value)


def _drop_broker_pools(app: Any) -> None:
    # What Celery itself does after a fork (Celery._after_fork). The pools stay open in
    # kombu's registry, keyed by broker and options, for the next user of that broker.
    app._pool = None
    amqp = app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None


# --- the environment of a child ---------------------------------------------------------------


def database_url(settings_dict: dict[str, Any]) -> str:
    """postgres:// URL for a Django DATABASES entry (e.g. the test database in use)."""
    engine = settings_dict["ENGINE"]
    if not engine.endswith("postgresql"):
        raise StackError(f"child processes need PostgreSQL, the test database is {engine}")
    user = quote(settings_dict.get("USER") or "", safe="")
    password = quote(settings_dict.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = f":{settings_dict['PORT']}" if settings_dict.get("PORT") else ""
    return f"postgres://{credentials}{host}{port}/{quote(str(settings_dict['NAME']), safe='')}"


def stack_env(
    *,
    database_url: str,
    redis_url: str,
    prefix: str = SESSION_PREFIX,
    extra: dict[str, str] | None = None,
) -> dict[str, str]:
    """Environment for a child process that shares the test's database and Redis namespace.

    ``database_url`` must name the database the tests read (pytest-django's test
    database: ``connection.settings_dict["NAME"]`` inside a test using
    ``transactional_db`` or ``live_server``). The secret key is the test process's, so
    session hashes computed on either side agree.
    """
    from django.conf import settings

    env = {
        key: value
        for key, value in os.environ.items()
        # Settings of the test process that must not leak into the child's own.
        if not key.startswith(("CELERY_", "DATABASE_", "PYTEST_"))
    }
    env.update(
        {
            "DJANGO_SETTINGS_MODULE": "pollstr.settings",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url,
            "CACHE_KEY_PREFIX": cache_key_prefix(prefix),
            "CHANNELS_PREFIX": channels_prefix(prefix),
            "CELERY_BROKER_KEY_PREFIX": broker_key_prefix(prefix),
            "SECRET_KEY": str(settings.SECRET_KEY),
            "FAST_PASSWORD_HASHER": "1",
            "CELERY_EMBEDDED_WORKER": "0",
            "TASK_RETRY_BASE_DELAY": "0.05",
            "TASK_RETRY_MAX_DELAY": "0.2",
            "SECURE_COOKIES": "0",
            "TWO_FACTOR_GATEWAY": "sandbox",
            # Every browser and client of a test run signs up from 127.0.0.1, in one Redis
            # namespace for the session: the per-address and per-network sign-up limits
            # (tests/two_factor/test_sms_budget.py proves them) would refuse the 11th.
            "RATE_SIGNUP_PER_IP": "100000",
            "RATE_SIGNUP_PER_NETWORK": "100000",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    _delete_at_exit(redis_url, prefix)
    return env


_prefixes_to_delete: set[tuple[str, str]] = set()


def _delete_at_exit(redis_url: str, prefix: str) -> None:
    """The children's Redis keys go when the test process ends (crashed runs' keys don't
    collide with anything: every session has its own prefix)."""
    if not _prefixes_to_delete:
        atexit.register(_delete_prefixes)
    _prefixes_to_delete.add((redis_url, prefix))


def _delete_prefixes() -> None:
    for redis_url, prefix in _prefixes_to_delete:
        with suppress(Exception):  # Redis may be gone already at exit
            redis_delete_prefix(redis_url, prefix)


# --- child processes --------------------------------------------------------------------------


class ChildProcess:
    """One child in its own process group, its stdout and stderr in a log file."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.argv = argv
        self._dir = Path(tempfile.mkdtemp(prefix=f"pollstr-{label}-"))
        self.log_path = self._dir / f"{label}.log"
        with self.log_path.open("wb") as log:
            self.popen = subprocess.Popen(
                argv,
                cwd=BASE_DIR,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def fail(self, message: str) -> StackError:
        return StackError(
            f"{self.label}: {message}\ncommand: {' '.join(self.argv)}\n"
            f"log ({self.log_path}), last lines:\n{self.log_tail()}"
        )

    def wait_until(
        self, predicate: Callable[[], Any], *, what: str, timeout: float = STARTUP_TIMEOUT
    ) -> Any:
        """Poll ``predicate`` until it returns something truthy; fail if the child exits."""
        deadline = time.monotonic() + timeout
        while True:
            result = predicate()
            if result:
                return result
            code = self.popen.poll()
            if code is not None:
                raise self.fail(f"exited with status {code} while waiting for {what}")
            if time.monotonic() > deadline:
                raise self.fail(f"no {what} within {timeout:.0f} s")
            time.sleep(POLL_INTERVAL)

    def terminate(self) -> None:
        """SIGTERM the whole group without waiting (`stop` waits, and kills if need be)."""
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = STOP_TIMEOUT) -> None:
        """SIGTERM the whole group, then SIGKILL whatever is left after ``timeout``.

        A Celery worker takes SIGTERM as a warm shutdown; its pool processes get it too,
        which halves the shutdown (a task cut off there is redelivered: acks_late).
        """
        for sig in (signal.SIGTERM, signal.SIGKILL):
            with suppress(ProcessLookupError, PermissionError):
                os.killpg(self.popen.pid, sig)
            with suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
                if sig == signal.SIGTERM:
                    # The leader is gone; make sure no child of it outlives the test.
                    with suppress(ProcessLookupError, PermissionError):
                        os.killpg(self.popen.pid, signal.SIGKILL)
                    return
        self.popen.wait(timeout)

    def discard_log(self) -> None:
        shutil.rmtree(self._dir, ignore_errors=True)


@contextmanager
def _running(child: ChildProcess) -> Iterator[None]:
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        child.stop()
        if failed:
            print(f"\n{child.label} log kept at {child.log_path}", file=sys.stderr)
        else:
            child.discard_log()


@dataclass
class Worker:
    process: ChildProcess
    nodename: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.process.log_text()

    def wait_for_log(self, text: str, *, timeout: float = 20.0) -> None:
        self.process.wait_until(lambda: text in self.log_text(), what=repr(text), timeout=timeout)


_READY = re.compile(r"(\S+@\S+) ready\.")


@contextmanager
def celery_worker(
    env: dict[str, str], *, concurrency: int | None = None, name: str = "pollstr-test"
) -> Iterator[Worker]:
    """A real ``celery worker`` (the compose ``worker`` command), ready to take tasks.

    Ready means Celery logged ``<nodename> ready.``: it consumes from the broker.
    """
    child = _worker_child(env, concurrency=concurrency, name=name)
    with _running(child):
        yield _worker_ready(child)


def _worker_child(env: dict[str, str], *, concurrency: int | None, name: str) -> ChildProcess:
    # A unique node name, so control commands (ping, stats) reach exactly this worker.
    hostname = f"{name}-{secrets.token_hex(3)}@%h"
    argv = [
        sys.executable,
        "-m",
        *worker_command(concurrency=concurrency),
        f"--hostname={hostname}",
    ]
    return ChildProcess("celery-worker", argv, env)


def _worker_ready(child: ChildProcess) -> Worker:
    match = child.wait_until(lambda: _READY.search(child.log_text()), what="'ready.' line")
    return Worker(process=child, nodename=match.group(1))


@dataclass
class WebServer:
    process: ChildProcess
    url: str

    @property
    def pid(self) -> int:
        return self.process.pid

    def log_text(self) -> str:
        return self.process.log_text()


@contextmanager
def daphne_server(
    env: dict[str, str], *, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[WebServer]:
    """A real daphne (``make run``'s server) serving Pollstr; yields once HTTP answers."""
    port = port or free_port()
    argv = [sys.executable, "-m", *daphne_command(host=host, port=port)]
    with _serving(ChildProcess("daphne", argv, env), host=host, port=port) as server:
        yield server


@contextmanager
def celery_worker_and_daphne(
    env: dict[str, str], *, concurrency: int | None = None
) -> Iterator[tuple[Worker, WebServer]]:
    """`celery_worker` and `daphne_server` at once: both processes start before either
    is waited for, so their imports overlap (a browser test's stack is up in about the
    time of the slower one)."""
    port = free_port()
    with ExitStack() as running:
        worker_child = _worker_child(env, concurrency=concurrency, name="pollstr-test")
        running.enter_context(_running(worker_child))
        argv = [sys.executable, "-m", *daphne_command(host="127.0.0.1", port=port)]
        web_child = ChildProcess("daphne", argv, env)
        running.enter_context(_running(web_child))
        worker = _worker_ready(worker_child)
        try:
            yield worker, _web_ready(web_child, url=f"http://127.0.0.1:{port}")
        finally:
            # Both told to stop before either is waited for: their shutdowns overlap too.
            for child in (web_child, worker_child):
                child.terminate()


@contextmanager
def web_server(
    env: dict[str, str], *, host: str = "127.0.0.1", port: int | None = None
) -> Iterator[WebServer]:
    """The compose ``web`` command (gunicorn, uvicorn workers: WEB_CONCURRENCY of them)."""
    port = port or free_port()
    argv = [sys.executable, "-m", *web_command(host=host, port=port)]
    with _serving(ChildProcess("gunicorn", argv, env), host=host, port=port) as server:
        yield server


@contextmanager
def _serving(child: ChildProcess, *, host: str, port: int) -> Iterator[WebServer]:
    with _running(child):
        yield _web_ready(child, url=f"http://{host}:{port}")


def _web_ready(child: ChildProcess, *, url: str) -> WebServer:
    # /healthz answers as soon as Django serves, whatever the database is doing.
    child.wait_until(lambda: http_answers(url, "/healthz"), what=f"HTTP answer on {url}/healthz")
    return WebServer(process=child, url=url)


@contextmanager
def celery_beat(env: dict[str, str]) -> Iterator[ChildProcess]:
    """The compose ``beat`` command, its schedule file in a directory of its own."""
    schedule_dir = Path(tempfile.mkdtemp(prefix="pollstr-beat-"))
    argv = [sys.executable, "-m", *beat_command(schedule=schedule_dir / "celerybeat-schedule")]
    child = ChildProcess("celery-beat", argv, env)
    try:
        with _running(child):
            child.wait_until(lambda: "beat: Starting..." in child.log_text(), what="beat start")
            yield child
    finally:
        shutil.rmtree(schedule_dir, ignore_errors=True)


# No proxy: the children listen on loopback.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http_get(url: str, *, timeout: float = 5.0) -> tuple[int, bytes]:
    """(status, body) of a GET, without following redirects' errors or any proxy."""
    try:
        with _opener.open(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def http_answers(url: str, path: str = "/") -> bool:
    try:
        http_get(url + path, timeout=1.0)
    except (urllib.error.URLError, OSError):
        return False
    return True


def wait_for(
    predicate: Callable[[], Any],
    *,
    what: str,
    timeout: float = 20.0,
    log: Callable[[], str] | None = None,
) -> Any:
    """Poll ``predicate`` every 0.1 s until truthy; fail naming ``what`` (and a log tail)."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            tail = "\n".join(log().splitlines()[-40:]) if log else ""
            raise AssertionError(
                f"timed out after {timeout:.0f} s waiting for {what}"
                + (f"\nlast log lines:\n{tail}" if tail else "")
            )
        time.sleep(POLL_INTERVAL)


@contextmanager
def private_redis() -> Iterator[tuple[str, ChildProcess]]:
    """A redis-server of our own on a free loopback port (for tests that stop it).

    Yields its URL and the process; the test may ``stop()`` it early. Never the shared
    Redis: other test runs use that one at the same time.
    """
    if shutil.which("redis-server") is None:
        raise StackError("redis-server is not on PATH (apt-get install redis-server)")
    port = free_port()
    argv = ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    argv += ["--appendonly", "no", "--daemonize", "no"]
    child = ChildProcess("redis", argv, dict(os.environ))
    url = f"redis://127.0.0.1:{port}/0"
    with _running(child):
        child.wait_until(lambda: redis_ping(url), what=f"PONG from {url}", timeout=10)
        yield url, child
