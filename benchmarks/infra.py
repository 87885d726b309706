"""The benchmark's world: its own PostgreSQL database and Redis namespace, the Django
settings of the harness process, and the real processes it measures (Pollstr's web
server and Celery workers as ``tests/stack.py`` declares them, the Verify double, the
synchronous baseline, a bare websocket server).

Isolation: the database is ``pollstr_bench`` (dropped, created, migrated, dropped again
at the end) and every Redis key lives under a prefix unique to this invocation in
``--redis-url``'s database; only keys under that prefix are deleted. Nothing else on the
shared PostgreSQL or Redis is touched.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import secrets
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

from tests import stack  # noqa: E402

DB_NAME = "pollstr_bench"
PASSWORD = "bench-pass-1234"  # noqa: S105 (a throwaway benchmark account's)
UNLIMITED = "100000000"
STARTUP_TIMEOUT = 120.0
_READY = re.compile(r"(\S+@\S+) ready\.")
# "${NAME:-default}" in docker-compose.yml
_DEFAULT = re.compile(r"^\$\{[A-Z0-9_]+:-(.*)\}$")


class BenchError(RuntimeError):
    """Something the benchmark needs is missing or did not start; says what to do."""


@dataclass(frozen=True)
class World:
    """Where this invocation's data lives."""

    postgres: str  # server URL, no database
    redis_url: str
    prefix: str

    @property
    def database_url(self) -> str:
        parts = urlsplit(self.postgres)
        return urlunsplit((parts.scheme, parts.netloc, f"/{DB_NAME}", parts.query, ""))


def new_world(postgres: str, redis_url: str) -> World:
    return World(postgres, redis_url, f"pollstr-bench-{os.getpid()}-{secrets.token_hex(3)}")


# --- what docker-compose.yml deploys ------------------------------------------------------


@dataclass(frozen=True)
class Deployment:
    """What docker-compose.yml runs by default: the benchmark measures that."""

    web_concurrency: int
    worker_pool: str
    worker_concurrency: int


def compose_defaults(path: Path | None = None) -> Deployment:
    import yaml

    compose = yaml.safe_load((path or BASE_DIR / "docker-compose.yml").read_text())
    env = compose["x-pollstr-env"]

    def default(name: str, fallback: str) -> str:
        match = _DEFAULT.match(str(env.get(name, "")))
        return match.group(1) if match else str(env.get(name) or fallback)

    return Deployment(
        web_concurrency=int(default("WEB_CONCURRENCY", "2")),
        worker_pool=default("CELERY_WORKER_POOL", "prefork"),
        worker_concurrency=int(default("CELERY_WORKER_CONCURRENCY", "2")),
    )


# --- the harness process ------------------------------------------------------------------


def raise_open_files_limit(wanted: int = 20000) -> int:
    """Thousands of sockets need file descriptors; children inherit the raised limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def configure_django(world: World) -> None:
    """Settings of the harness process, before Django loads: the bench database, the
    Redis namespace, limits high enough that a load run is never refused."""
    for key in [key for key in os.environ if key.startswith(("CELERY_", "DATABASE_"))]:
        del os.environ[key]
    loopback = ",".join(filter(None, [os.environ.get("NO_PROXY", ""), "localhost,127.0.0.1"]))
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pollstr.settings",
            "DATABASE_URL": world.database_url,
            "REDIS_URL": world.redis_url,
            "CACHE_KEY_PREFIX": stack.cache_key_prefix(world.prefix),
            "CHANNELS_PREFIX": stack.channels_prefix(world.prefix),
            "CELERY_BROKER_KEY_PREFIX": stack.broker_key_prefix(world.prefix),
            "SECRET_KEY": secrets.token_urlsafe(40),
            "FAST_PASSWORD_HASHER": "1",
            "CELERY_EMBEDDED_WORKER": "0",
            "SECURE_COOKIES": "0",
            # The profiles drive Django's test client, whose host is "testserver".
            "ALLOWED_HOSTS": "127.0.0.1,localhost,testserver",
            "TWO_FACTOR_RESEND_COOLDOWN": "0",
            # The harness is a load generator: its own threads (publishing for P4, voting)
            # must not queue on the 10 connections a Pollstr process is given.
            "DATABASE_POOL_MAX_SIZE": "40",
            "NO_PROXY": loopback,
            "no_proxy": loopback,
            **{name: UNLIMITED for name in _RATE_LIMITS},
            **_BUDGET,
        }
    )
    import django

    django.setup()


_RATE_LIMITS = (
    "RATE_START_PER_USER",
    "RATE_START_PER_NUMBER",
    "RATE_START_PER_IP",
    "RATE_START_PER_SESSION",
    "RATE_START_GLOBAL_DAILY",
    "RATE_CHECK_PER_USER",
    "RATE_NUMBER_PER_USER",
    # Every simulated voter signs up and asks for codes from 127.0.0.1.
    "RATE_START_PER_NETWORK",
    "RATE_SIGNUP_PER_IP",
    "RATE_SIGNUP_PER_NETWORK",
)
# The SMS budget's daily caps are checked on every send, as in production, but set above
# what a run sends (P2 sends about 20 codes a second, all to one region).
_BUDGET = {
    "SMS_COUNTRY_DAILY_SENDS": f"*:{UNLIMITED}",
    "SMS_COUNTRY_DAILY_SPEND": f"*:{UNLIMITED}",
    "SMS_DAILY_SPEND": UNLIMITED,
}


def use_vonage_double(info: dict[str, str]) -> None:
    """Point this process (and the children's environment) at the Verify double."""
    os.environ.update(
        {
            "TWO_FACTOR_GATEWAY": "vonage",
            "VONAGE_API_HOST": info["host"],
            "VONAGE_API_KEY": "fake-key",
            "VONAGE_API_SECRET": "fake-secret",
            "REQUESTS_CA_BUNDLE": info["ca_bundle"],
        }
    )


def child_env(world: World, **extra: str) -> dict[str, str]:
    """The environment of a Pollstr child: the harness's, in the same namespace, with
    the harness's gateway (stack_env defaults children to the sandbox) and limits."""
    kept = {
        name: os.environ[name]
        for name in (
            *_RATE_LIMITS,
            *_BUDGET,
            *_GATEWAY,
            "TWO_FACTOR_RESEND_COOLDOWN",
            "ALLOWED_HOSTS",
        )
        if name in os.environ
    }
    return stack.stack_env(
        database_url=world.database_url,
        redis_url=world.redis_url,
        prefix=world.prefix,
        extra={**kept, **extra},
    )


_GATEWAY = (
    "TWO_FACTOR_GATEWAY",
    "VONAGE_API_HOST",
    "VONAGE_API_KEY",
    "VONAGE_API_SECRET",
    "REQUESTS_CA_BUNDLE",
)


# --- PostgreSQL ---------------------------------------------------------------------------


def _admin_connection(world: World) -> Any:
    import psycopg

    parts = urlsplit(world.postgres)
    url = urlunsplit((parts.scheme, parts.netloc, "/postgres", parts.query, ""))
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


def database_create(world: World) -> None:
    """Drop and create ``pollstr_bench`` (never another database)."""
    import psycopg

    try:
        with _admin_connection(world) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')
    except psycopg.OperationalError as error:
        raise BenchError(
            f"PostgreSQL is not reachable at {world.postgres} ({error}). Start it, or pass "
            "--postgres URL."
        ) from None


def database_drop(world: World) -> None:
    with suppress(Exception), _admin_connection(world) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def database_migrate() -> None:
    from django.core.management import call_command

    call_command("migrate", interactive=False, verbosity=0)


def in_process_main(
    parser: argparse.ArgumentParser, run: Callable[[argparse.Namespace], Any], argv: Any = None
) -> None:
    """An in-process benchmark's ``main``: its own options (``parser``), the database
    server and Redis to use, then ``run(args)`` in `in_process_world`."""
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args(argv)
    with in_process_world(args.postgres, args.redis_url):
        run(args)


@contextmanager
def in_process_world(postgres: str, redis_url: str) -> Iterator[World]:
    """This process as Pollstr, on a fresh migrated database (dropped afterwards) and its
    own Redis prefix, with the sandbox gateway: the in-process benchmarks' setting."""
    world = new_world(postgres, redis_url)
    database_create(world)
    try:
        configure_django(world)
        os.environ["TWO_FACTOR_GATEWAY"] = "sandbox"
        from django.conf import settings

        settings.TWO_FACTOR_GATEWAY = "sandbox"
        database_migrate()
        yield world
    finally:
        database_drop(world)


def postgres_headroom(world: World) -> tuple[int, int]:
    """(max_connections, connections in use now) on the shared server."""
    with _admin_connection(world) as conn:
        limit = int(conn.execute("SHOW max_connections").fetchone()[0])
        used = int(conn.execute("SELECT count(*) FROM pg_stat_activity").fetchone()[0])
    return limit, used


def redis_cleanup(world: World) -> int:
    return stack.redis_delete_prefix(world.redis_url, world.prefix)


def broker_purge(world: World) -> int:
    """Empty the task queues of this namespace (a backlog a run left behind), keeping
    kombu's exchange bindings so the next producer and workers route as before."""
    import redis

    client = redis.Redis.from_url(world.redis_url)
    prefix = stack.broker_key_prefix(world.prefix)
    doomed = [
        key
        for key in client.scan_iter(match=f"{_glob_escape(prefix)}*", count=500)
        if b"_kombu.binding" not in key
    ]
    deleted = client.delete(*doomed) if doomed else 0
    client.close()
    return int(deleted)


def _glob_escape(text: str) -> str:
    return re.sub(r"([\\*?\[\]])", r"\\\1", text)


# --- child processes ----------------------------------------------------------------------


@contextmanager
def running(child: stack.ChildProcess) -> Iterator[stack.ChildProcess]:
    """Stop the child's whole process group on the way out; keep its log on failure
    (tests/stack.py's guard, handing the child to the caller)."""
    with stack._running(child):
        yield child


@contextmanager
def verify_double(latency: float) -> Iterator[dict[str, str]]:
    """The project's HTTPS Verify v2 double with ``latency`` seconds per call."""
    info_file = Path(tempfile.mkdtemp(prefix="pollstr-bench-double-")) / "info.json"
    argv = [sys.executable, "-m", "benchmarks.verify_double", f"--latency={latency}"]
    child = stack.ChildProcess(
        "verify-double", [*argv, f"--info-file={info_file}"], dict(os.environ)
    )
    try:
        with running(child):
            child.wait_until(info_file.exists, what="the double's info file", timeout=30)
            yield json.loads(info_file.read_text())
    finally:
        shutil.rmtree(info_file.parent, ignore_errors=True)


@contextmanager
def pollstr_web(env: dict[str, str], **overrides: str) -> Iterator[stack.WebServer]:
    """Pollstr's web server: tests/stack.py's WEB_COMMAND (what compose's ``web`` runs)."""
    with stack.web_server({**env, **overrides}) as server:
        yield server


@contextmanager
def pollstr_workers(
    env: dict[str, str],
    *,
    processes: int,
    pool: str,
    concurrency: int,
    checks_only: bool = False,
) -> Iterator[list[stack.ChildProcess]]:
    """``processes`` real Celery workers (tests/stack.py's worker_command(), or with
    ``checks_only`` the compose ``worker-checks`` command), each with ``pool`` and
    ``concurrency``; yields once every one logged ``ready.``."""
    worker_env = {**env, "CELERY_WORKER_POOL": pool, "CELERY_WORKER_CONCURRENCY": str(concurrency)}
    command = stack.CHECKS_WORKER_COMMAND if checks_only else stack.worker_command()
    label = "celery-checks" if checks_only else "celery-worker"
    children: list[stack.ChildProcess] = []
    try:
        for index in range(processes):
            hostname = f"bench{index}-{label}-{secrets.token_hex(3)}@%h"
            argv = [sys.executable, "-m", *command, f"--hostname={hostname}"]
            children.append(stack.ChildProcess(f"{label}-{index}", argv, worker_env))
        for child in children:
            child.wait_until(
                lambda child=child: _READY.search(child.log_text()),
                what="'ready.' line",
                timeout=STARTUP_TIMEOUT,
            )
        yield children
    except BaseException:
        for child in children:
            print(f"{child.label} log kept at {child.log_path}", file=sys.stderr)
        raise
    finally:
        for child in children:
            child.stop(timeout=15)


@contextmanager
def sync_baseline(env: dict[str, str], *, users: int, tmpdir: Path) -> Iterator[dict[str, Any]]:
    """The tutorial design under ``runserver``, seeded with ``users`` voters."""
    baseline_env = {
        **env,
        "DJANGO_SETTINGS_MODULE": "benchmarks.sync_baseline.settings",
        "BASELINE_DB": str(tmpdir / "baseline.sqlite3"),
        "BASELINE_SECRET_KEY": secrets.token_urlsafe(40),
    }
    seed = stack.ChildProcess(
        "baseline-seed",
        [
            sys.executable,
            "-m",
            "benchmarks.sync_baseline.seed",
            f"--users={users}",
            f"--password={PASSWORD}",
        ],
        baseline_env,
    )
    code = seed.popen.wait(timeout=300)
    if code != 0:
        raise seed.fail(f"seeding exited with {code}")
    facts = json.loads(seed.log_text().strip().splitlines()[-1])
    seed.discard_log()
    port = stack.free_port()
    argv = [sys.executable, "-m", "django", "runserver", f"127.0.0.1:{port}", "--noreload"]
    child = stack.ChildProcess("sync-baseline", argv, baseline_env)
    url = f"http://127.0.0.1:{port}"
    with running(child):
        child.wait_until(lambda: stack.http_answers(url, "/healthz"), what="runserver answer")
        yield {**facts, "url": url, "pid": child.pid}


@contextmanager
def bare_websocket_server(fragment_bytes: int) -> Iterator[tuple[str, int]]:
    """The reference fan-out: a plain asyncio websocket server (benchmarks.bare_ws)."""
    port = stack.free_port()
    argv = [
        sys.executable,
        "-m",
        "benchmarks.bare_ws",
        f"--port={port}",
        f"--fragment-bytes={fragment_bytes}",
    ]
    child = stack.ChildProcess("bare-ws", argv, dict(os.environ))
    with running(child):
        child.wait_until(lambda: "listening" in child.log_text(), what="'listening'", timeout=30)
        yield f"ws://127.0.0.1:{port}/", child.pid


# --- processes' memory ----------------------------------------------------------------------


def tree_rss_kb(pid: int) -> int:
    """Resident memory of ``pid`` and all its descendants, in KB (from /proc)."""
    total = 0
    for member in _descendants(pid) | {pid}:
        with suppress(OSError):
            for line in Path(f"/proc/{member}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def _descendants(pid: int) -> set[int]:
    found: set[int] = set()
    pending = [pid]
    while pending:
        current = pending.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            with suppress(OSError):
                for child in (task / "children").read_text().split():
                    if int(child) not in found:
                        found.add(int(child))
                        pending.append(int(child))
    return found


# --- CPU ------------------------------------------------------------------------------------


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds used so far by ``pid``'s tree: each live member's own time
    plus that of the children it reaped (a PostgreSQL backend that ended, a restarted
    web worker)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for member in _descendants(pid) | {pid}:
        with suppress(OSError, IndexError, ValueError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(value) for value in fields[11:15])
    return total / ticks


def named_cpu_seconds(names: tuple[str, ...]) -> float:
    """CPU seconds of every process whose command is one of ``names`` (machine-wide:
    other users of the shared PostgreSQL and Redis count too)."""
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with suppress(OSError, IndexError, ValueError):
            text = stat.read_text()
            command = text[text.index("(") + 1 : text.rindex(")")]
            if command in names or any(command.startswith(name) for name in names):
                fields = text.rsplit(")", 1)[1].split()
                total += int(fields[11]) + int(fields[12])
    return total / ticks


def machine_busy_seconds() -> tuple[float, float]:
    """(busy, total) CPU seconds of the whole machine since boot, from /proc/stat."""
    ticks = os.sysconf("SC_CLK_TCK")
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + (values[4] if len(values) > 4 else 0)
    return (sum(values) - idle) / ticks, sum(values) / ticks
