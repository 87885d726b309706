"""How fast real Celery workers take phone verifications from ``queued`` to ``sent``.

    .venv/bin/python benchmarks/verification_throughput.py \
        [--verifications 200] [--latency 0.1] [--failure-rate 0.0] \
        [--workers 1,2] [--concurrency 2]

For each worker count in ``--workers`` this starts that many ``celery worker`` processes
(the docker-compose ``worker`` command, through ``tests/stack.py``: what
``docker compose up --scale worker=N`` runs), each a prefork pool of ``--concurrency``
processes. It then queues ``--verifications`` verifications in a burst through
``two_factor.services.verification_start`` (fresh users, numbers and sessions, as the
/2fa/ view would), and polls PostgreSQL until every one is settled (``sent``, ``failed``)
or the per-run timeout passes. The gateway is the sandbox, with ``--latency`` seconds of
artificial provider latency per call and ``--failure-rate`` transient failures (retried
by the task with the production backoff unless ``--retry-base-delay`` says otherwise).

Figures come from the audit trail (``VerificationEvent`` timestamps), not from polling:
wall time is the first ``queued`` event to the last settling event, latency is each
verification's ``queued`` event to its ``sent`` event.

Isolation: a dedicated PostgreSQL database (``pollstr_bench``, dropped and created, then
migrated with ``manage.py migrate``; dropped again at the end unless ``--keep-db``) and a
Redis database (14 by default) under a key prefix unique to this run; only keys under
that prefix are deleted at the end. Results: a markdown table on stdout and JSON in
``benchmarks/results/verification_throughput.json`` (``--output``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import secrets
import subprocess
import sys
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

BASE_DIR = Path(__file__).resolve().parent.parent
if str(BASE_DIR) not in sys.path:
    sys.path.insert(0, str(BASE_DIR))

DEFAULT_POSTGRES = "postgres://postgres@127.0.0.1:5432"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
DB_NAME = "pollstr_bench"
DEFAULT_OUTPUT = BASE_DIR / "benchmarks" / "results" / "verification_throughput.json"
PREFIX = f"pollstr-bench-{os.getpid()}-{secrets.token_hex(3)}"
POLL_INTERVAL = 0.25
MIGRATE_TIMEOUT = 180.0
# Rate limits high enough that the benchmark is never refused (one IP, many requests).
UNLIMITED = "100000000"
SETTLED = ("sent", "failed", "expired", "cancelled", "calling", "checking", "verified")


# --- arguments -------------------------------------------------------------------------------


def _worker_counts(text: str) -> list[int]:
    try:
        counts = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2 — got {text!r}") from None
    if not counts or any(not 1 <= count <= 8 for count in counts):
        raise argparse.ArgumentTypeError("worker counts must be between 1 and 8")
    return counts


def _bounded(kind: type, low: float, high: float) -> Any:
    def parse(text: str) -> Any:
        value = kind(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Queue→sent throughput of real Celery workers (sandbox gateway)."
    )
    parser.add_argument("--verifications", type=_bounded(int, 1, 5000), default=200)
    parser.add_argument(
        "--latency", type=_bounded(float, 0, 30), default=0.1, help="provider seconds per call"
    )
    parser.add_argument(
        "--failure-rate",
        type=_bounded(float, 0, 0.9),
        default=0.0,
        help="share of provider calls that fail transiently (retried)",
    )
    parser.add_argument(
        "--workers",
        type=_worker_counts,
        default=[1, 2],
        help="comma-separated worker process counts, one run each (default 1,2)",
    )
    parser.add_argument(
        "--concurrency",
        type=_bounded(int, 1, 16),
        default=2,
        help="prefork pool size of each worker (compose default 2)",
    )
    parser.add_argument(
        "--retry-base-delay",
        type=_bounded(float, 0.01, 60),
        default=2.0,
        help="TASK_RETRY_BASE_DELAY for the workers (production default 2 s)",
    )
    parser.add_argument(
        "--retry-max-delay",
        type=_bounded(float, 0.01, 600),
        default=60.0,
        help="TASK_RETRY_MAX_DELAY for the workers (production default 60 s)",
    )
    parser.add_argument(
        "--timeout",
        type=_bounded(float, 5, 1800),
        default=120.0,
        help="seconds each run may take to settle every verification",
    )
    parser.add_argument(
        "--mode",
        choices=("backlog", "live"),
        default="backlog",
        help=(
            "backlog (default): the workers' consumers are paused while the burst is "
            "queued, then released, so the figures are the workers' alone; live: the "
            "workers consume while this process is still queueing (producer-bound when "
            "the workers are faster than one producer)"
        ),
    )
    parser.add_argument("--postgres", default=DEFAULT_POSTGRES, help="server URL, no database")
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--keep-db", action="store_true", help=f"keep {DB_NAME} afterwards")
    return parser.parse_args(argv)


# --- environment, database, Django -------------------------------------------------------------


def database_url(server: str, name: str) -> str:
    parts = urlsplit(server)
    return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))


def configure_environment(args: argparse.Namespace) -> None:
    """Everything the benchmark process and its children read from the environment.

    Set before Django loads, so settings pick up the broker, cache and key prefixes
    exactly as a deployment's processes would.
    """
    for key in [key for key in os.environ if key.startswith(("CELERY_", "DATABASE_"))]:
        del os.environ[key]
    os.environ.update(
        {
            "DJANGO_SETTINGS_MODULE": "pollstr.settings",
            "DATABASE_URL": database_url(args.postgres, DB_NAME),
            "REDIS_URL": args.redis_url,
            "CACHE_KEY_PREFIX": f"{PREFIX}:cache",
            "CHANNELS_PREFIX": f"{PREFIX}:asgi",
            "CELERY_BROKER_KEY_PREFIX": f"{PREFIX}:celery:",
            "CELERY_EMBEDDED_WORKER": "0",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "SECURE_COOKIES": "0",
            "TWO_FACTOR_GATEWAY": "sandbox",
            "TWO_FACTOR_SANDBOX_INBOX": "0",
            "TWO_FACTOR_SANDBOX_LATENCY": str(args.latency),
            "TWO_FACTOR_SANDBOX_FAILURE_RATE": str(args.failure_rate),
            "TASK_RETRY_BASE_DELAY": str(args.retry_base_delay),
            "TASK_RETRY_MAX_DELAY": str(args.retry_max_delay),
            "RATE_START_PER_USER": UNLIMITED,
            "RATE_START_PER_NUMBER": UNLIMITED,
            "RATE_START_PER_IP": UNLIMITED,
            "RATE_START_PER_SESSION": UNLIMITED,
            "RATE_START_GLOBAL_DAILY": UNLIMITED,
            "LOG_LEVEL": "WARNING",  # this process; the workers log at INFO as deployed
        }
    )


def database_recreate(server: str) -> str:
    """Drop and create the benchmark database; return the server's version."""
    import psycopg

    with psycopg.connect(database_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{DB_NAME}"')
        row = conn.execute("SHOW server_version").fetchone()
    return str(row[0]) if row else "?"


def database_drop(server: str) -> None:
    import psycopg

    with psycopg.connect(database_url(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')


def migrate() -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"],
        cwd=BASE_DIR,
        env=dict(os.environ),
        capture_output=True,
        text=True,
        timeout=MIGRATE_TIMEOUT,
        check=False,
    )
    if result.returncode != 0:
        sys.exit(f"manage.py migrate failed:\n{result.stdout}\n{result.stderr}")


# --- one run ---------------------------------------------------------------------------------


def number_for(run_index: int, index: int) -> str:
    """+3361 and seven digits: a valid French mobile, distinct per run and verification."""
    return f"+3361{run_index:02d}{index:05d}"


def voters_create(run_index: int, count: int) -> list[tuple[Any, str]]:
    """``count`` users, each with a number and a logged-in session: (user, session key)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.contrib.sessions.backends.db import SessionStore

    from two_factor import services

    user_model = get_user_model()
    users = user_model.objects.bulk_create(
        [
            user_model(username=f"bench-{run_index}-{index}", password=make_password(None))
            for index in range(count)
        ]
    )
    voters = []
    for index, user in enumerate(users):
        services.phone_number_set(user=user, raw_number=number_for(run_index, index))
        session = SessionStore()
        session["_auth_user_id"] = str(user.pk)
        session.create()
        voters.append((user, str(session.session_key)))
    return voters


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile (share in 0..1)."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def summary(values: list[float]) -> dict[str, float | None]:
    return {
        "p50": _round(percentile(values, 0.50)),
        "p95": _round(percentile(values, 0.95)),
        "max": _round(max(values) if values else None),
    }


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def measure(ids: list[Any], *, released_at: dt.datetime | None = None) -> dict[str, Any]:
    """The run's figures, from the verifications and their audit trail.

    Latency runs from each verification's ``queued`` event, or from ``released_at`` when
    the burst was held back until then (backlog mode): that is when the workers could
    first see it, as if all of it had arrived at that moment.
    """
    from two_factor.models import Verification, VerificationEvent

    rows = list(
        Verification.objects.filter(pk__in=ids).values_list("pk", "status", "send_attempts")
    )
    first: dict[tuple[Any, str], dt.datetime] = {}
    settled_at: dict[Any, dt.datetime] = {}
    events = VerificationEvent.objects.filter(verification_id__in=ids).order_by("created_at")
    for pk, to_status, created_at in events.values_list(
        "verification_id", "to_status", "created_at"
    ):
        first.setdefault((pk, to_status), created_at)
        if to_status in SETTLED:
            settled_at.setdefault(pk, created_at)

    def start_of(pk: Any) -> dt.datetime | None:
        queued = first.get((pk, "queued"))
        if queued is None or released_at is None:
            return queued
        return max(queued, released_at)

    def seconds(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
        if start is None or end is None:
            return None
        return (end - start).total_seconds()

    def series(start: Any, end: str) -> list[float]:
        values = [seconds(start(pk), first.get((pk, end))) for pk in ids]
        return [value for value in values if value is not None]

    queue_to_sent = series(start_of, "sent")
    waits = series(start_of, "sending")
    service = series(lambda pk: first.get((pk, "sending")), "sent")
    starts = [start for pk in ids if (start := start_of(pk)) is not None]
    wall = (max(settled_at.values()) - min(starts)).total_seconds() if settled_at else None
    statuses: dict[str, int] = {}
    for _, status, _ in rows:
        statuses[status] = statuses.get(status, 0) + 1
    sent = len(queue_to_sent)
    return {
        "sent": sent,
        "failed": statuses.get("failed", 0),
        "unsettled": sum(1 for _, status, _ in rows if status not in SETTLED),
        "statuses": statuses,
        "wall_seconds": _round(wall),
        "sent_per_second": _round(sent / wall, 2) if wall else None,
        "queue_to_sent_seconds": summary(queue_to_sent),
        "queue_wait_seconds": summary(waits),
        "pickup_to_sent_seconds": summary(service),
        "retried": sum(1 for _, _, attempts in rows if attempts > 1),
        "extra_attempts": sum(max(0, attempts - 1) for _, _, attempts in rows),
    }


def cpu_machine() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine so far, from /proc/stat."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    ticks = [int(value) for value in fields[:8]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    hz = os.sysconf("SC_CLK_TCK")
    return (sum(ticks) - idle) / hz, sum(ticks) / hz


def cpu_processes() -> dict[int, tuple[str, int, float]] | None:
    """pid -> (command, process group, CPU seconds used so far) for every process."""
    proc = Path("/proc")
    if not proc.is_dir():
        return None
    hz = os.sysconf("SC_CLK_TCK")
    found = {}
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            text = (entry / "stat").read_text()
        except OSError:
            continue
        command = text[text.find("(") + 1 : text.rfind(")")]
        # Fields after the ")" closing the command name, from field 3 (state) on.
        fields = text.rsplit(")", 1)[1].split()
        found[int(entry.name)] = (command, int(fields[2]), (int(fields[11]) + int(fields[12])) / hz)
    return found


def cpu_used(
    before: dict[int, tuple[str, int, float]] | None,
    after: dict[int, tuple[str, int, float]] | None,
    worker_groups: list[int],
) -> dict[str, Any]:
    """CPU seconds between two snapshots: the workers' process groups, and the top
    commands machine-wide (PostgreSQL backends, Redis, this process…)."""
    if before is None or after is None:
        return {}
    workers = 0.0
    by_command: dict[str, float] = {}
    for pid, (command, group, seconds) in after.items():
        used = seconds - (before[pid][2] if pid in before else 0.0)
        if used <= 0:
            continue
        if group in worker_groups:
            workers += used
            command = "celery worker (all pool processes)"
        elif pid == os.getpid():
            command = "this benchmark process"
        by_command[command] = by_command.get(command, 0.0) + used
    top = sorted(by_command.items(), key=lambda item: -item[1])[:6]
    return {
        "worker_cpu_seconds": _round(workers, 2),
        "top_cpu_seconds": {command: _round(seconds, 2) for command, seconds in top},
    }


def consumers_switch(app: Any, nodes: list[str], *, on: bool) -> None:
    """Pause (cancel) or resume (add) every worker's consumer of the default queue."""
    queue = app.conf.task_default_queue or "celery"
    control = app.control.add_consumer if on else app.control.cancel_consumer
    replies = control(queue, destination=nodes, reply=True, timeout=5)
    answered = {node for reply in replies or [] for node in reply}
    if answered != set(nodes):
        raise RuntimeError(
            f"{'add' if on else 'cancel'}_consumer: no reply from {sorted(set(nodes) - answered)}"
        )


def run_once(
    args: argparse.Namespace, run_index: int, workers: int, redis_url: str
) -> dict[str, Any]:
    from django.db import close_old_connections
    from django.utils import timezone

    from pollstr.celery import app as celery_app
    from tests import stack
    from two_factor import services
    from two_factor.models import Verification

    run_prefix = f"{PREFIX}-run{run_index}"
    env = stack.stack_env(
        database_url=os.environ["DATABASE_URL"],
        redis_url=redis_url,
        prefix=run_prefix,
        extra={
            "TASK_RETRY_BASE_DELAY": str(args.retry_base_delay),
            "TASK_RETRY_MAX_DELAY": str(args.retry_max_delay),
            "FAST_PASSWORD_HASHER": "0",
            "LOG_LEVEL": "INFO",
        },
    )
    voters = voters_create(run_index, args.verifications)
    print(
        f"run {run_index}: {workers} worker(s) × concurrency {args.concurrency}, "
        f"{args.verifications} verifications …",
        file=sys.stderr,
        flush=True,
    )
    with (
        stack.celery_broker(celery_app, redis_url=redis_url, prefix=run_prefix),
        ExitStack() as running,
    ):
        started = time.monotonic()
        workers_running = [
            running.enter_context(
                stack.celery_worker(env, concurrency=args.concurrency, name=f"bench{number}")
            )
            for number in range(workers)
        ]
        startup = time.monotonic() - started
        groups = [worker.pid for worker in workers_running]
        nodes = [worker.nodename for worker in workers_running]
        if args.mode == "backlog":
            consumers_switch(celery_app, nodes, on=False)

        burst_started = time.monotonic()
        ids = [
            services.verification_start(user=user, session_key=key, ip="127.0.0.1").pk
            for user, key in voters
        ]
        enqueue = time.monotonic() - burst_started

        released_at = None
        machine_before: tuple[float, float] | None = None
        processes_before: dict[int, tuple[str, int, float]] | None = None
        if args.mode == "backlog":
            released_at = timezone.now()
            machine_before = cpu_machine()
            processes_before = cpu_processes()
            consumers_switch(celery_app, nodes, on=True)
        deadline = time.monotonic() + args.timeout
        pending = Verification.objects.filter(pk__in=ids).exclude(status__in=SETTLED)
        left = len(ids)
        while time.monotonic() < deadline:
            left = pending.count()
            if left == 0:
                break
            time.sleep(POLL_INTERVAL)
        machine_after = cpu_machine()
        processes_after = cpu_processes()
        close_old_connections()

    figures = measure(ids, released_at=released_at)
    cpu: dict[str, Any] = {}
    if released_at is not None and machine_before and machine_after:
        busy = machine_after[0] - machine_before[0]
        total = machine_after[1] - machine_before[1]
        cpu["machine_busy_percent"] = _round(100 * busy / total, 1) if total else None
    if released_at is not None:
        cpu.update(cpu_used(processes_before, processes_after, groups))
        if figures["sent"] and cpu.get("worker_cpu_seconds") is not None:
            cpu["worker_cpu_ms_per_verification"] = _round(
                1000 * cpu["worker_cpu_seconds"] / figures["sent"], 1
            )
        if figures["sent"] and machine_before and machine_after:
            busy = machine_after[0] - machine_before[0]
            cpu["machine_cpu_ms_per_verification"] = _round(1000 * busy / figures["sent"], 1)
    if left:
        print(f"  timed out after {args.timeout:.0f} s: {left} not settled", file=sys.stderr)
    return {
        "workers": workers,
        "concurrency": args.concurrency,
        "pool_processes": workers * args.concurrency,
        "verifications": args.verifications,
        # What provider latency alone allows: every pool process busy sleeping.
        "latency_ceiling_per_second": (
            _round(workers * args.concurrency / args.latency, 1) if args.latency else None
        ),
        "worker_startup_seconds": _round(startup, 2),
        "enqueue_seconds": _round(enqueue, 3),
        "mode": args.mode,
        "timed_out": bool(left),
        **figures,
        # Backlog mode only, from release until the poll saw everything settled.
        "cpu": cpu,
    }


# --- report ----------------------------------------------------------------------------------


def machine_facts(postgres_version: str, redis_url: str) -> dict[str, Any]:
    import celery
    import django
    import redis

    client = redis.Redis.from_url(redis_url)
    redis_version = client.info("server").get("redis_version", "?")
    client.close()
    return {
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "nproc": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "django": django.get_version(),
        "celery": celery.__version__,
        "postgresql": postgres_version,
        "redis": redis_version,
    }


def _cell(value: Any) -> str:
    return "–" if value is None else str(value)


def markdown_table(config: dict[str, Any], runs: list[dict[str, Any]]) -> str:
    lines = [
        f"{config['verifications']} verifications, provider latency {config['latency']} s, "
        f"transient failure rate {config['failure_rate']}, retry base delay "
        f"{config['retry_base_delay']} s, mode {config['mode']}",
        "",
        "| workers × concurrency | sent | failed | wall s | sent/s | latency ceiling/s "
        "| queue→sent p50 s | p95 s | max s | pickup→sent p50 s | retried | extra attempts "
        "| machine CPU % | CPU ms/verification: workers | all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for run in runs:
        q = run["queue_to_sent_seconds"]
        lines.append(
            "| "
            + " | ".join(
                _cell(value)
                for value in (
                    f"{run['workers']} × {run['concurrency']}",
                    run["sent"],
                    run["failed"],
                    run["wall_seconds"],
                    run["sent_per_second"],
                    run["latency_ceiling_per_second"],
                    q["p50"],
                    q["p95"],
                    q["max"],
                    run["pickup_to_sent_seconds"]["p50"],
                    run["retried"],
                    run["extra_attempts"],
                    run["cpu"].get("machine_busy_percent"),
                    run["cpu"].get("worker_cpu_ms_per_verification"),
                    run["cpu"].get("machine_cpu_ms_per_verification"),
                )
            )
            + " |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    configure_environment(args)

    import redis

    try:
        redis.Redis.from_url(args.redis_url, socket_connect_timeout=2).ping()
    except redis.RedisError as error:
        sys.exit(f"Redis at {args.redis_url} does not answer: {error}")

    print(f"database {DB_NAME}: recreate and migrate …", file=sys.stderr, flush=True)
    postgres_version = database_recreate(args.postgres)
    migrate()

    import django

    django.setup()
    from django.db import connections

    from tests import stack

    config = {
        "verifications": args.verifications,
        "latency": args.latency,
        "failure_rate": args.failure_rate,
        "workers": args.workers,
        "concurrency": args.concurrency,
        "retry_base_delay": args.retry_base_delay,
        "retry_max_delay": args.retry_max_delay,
        "timeout": args.timeout,
        "mode": args.mode,
        "gateway": "sandbox",
        "worker_command": " ".join(stack.worker_command(concurrency=args.concurrency)),
    }
    runs: list[dict[str, Any]] = []
    try:
        for run_index, workers in enumerate(args.workers):
            runs.append(run_once(args, run_index, workers, args.redis_url))
    finally:
        connections.close_all()
        stack.redis_delete_prefix(args.redis_url, PREFIX)
        if not args.keep_db:
            database_drop(args.postgres)

    result = {
        "benchmark": "verification_throughput",
        "machine": machine_facts(postgres_version, args.redis_url),
        "config": config,
        "runs": runs,
    }
    print(markdown_table(config, runs))
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {args.output}", file=sys.stderr)
    return 0 if all(not run["timed_out"] for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main())
