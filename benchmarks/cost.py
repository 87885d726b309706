"""What a verified voter costs, counted by the servers and the processes themselves.

- **Private servers.** The benchmark runs its own PostgreSQL cluster (``initdb`` into a
  temporary directory, ``pg_stat_statements`` preloaded) and its own ``redis-server``
  (append-only, as docker-compose.yml runs it), on free loopback ports. Their CPU is
  then theirs alone, and their statement and command counters count only this run.
- **CPU by process kind**: user + system time of each process tree (live members, plus
  the children they reaped), read from ``/proc`` before and after a measurement window.
- **SQL by process kind**: every Pollstr process kind connects as a role of its own
  (``bench_web``, ``bench_send``…), so ``pg_stat_statements`` groups statements by kind.
- **Redis commands**: ``INFO commandstats`` deltas.
- **Flame graphs**: ``py-spy record`` on a live process tree, to an SVG.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks import infra
from tests import stack

# The process kinds of a deployment, each its own PostgreSQL role.
KINDS = ("web", "send", "check", "beat")


def role(kind: str) -> str:
    return f"bench_{kind}"


# --- private PostgreSQL and Redis -----------------------------------------------------------


@dataclass
class Servers:
    postgres: str  # server URL, no database
    redis_url: str
    postgres_pid: int
    redis_pid: int


def _pg_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: p.parts)
    if not found:
        raise infra.BenchError(
            "PostgreSQL's server binaries are not installed (apt-get install postgresql): "
            "the benchmark runs a private cluster of its own."
        )
    return found[-1].parent


def _as_postgres(argv: list[str]) -> list[str]:
    """initdb and postgres refuse to run as root: run them as the ``postgres`` user."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *argv]
    return argv


@contextmanager
def private_servers(tmpdir: Path) -> Iterator[Servers]:
    """A PostgreSQL cluster and a redis-server of this run's own, stopped on the way out."""
    if shutil.which("redis-server") is None:
        raise infra.BenchError("redis-server is not installed (apt-get install redis-server)")
    pg_bin = _pg_bin()
    tmpdir.mkdir(parents=True, exist_ok=True)
    data = Path(tempfile.mkdtemp(prefix="pollstr-bench-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data, "postgres")
    subprocess.run(
        _as_postgres(
            [str(pg_bin / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-N"]
        ),
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        timeout=120,
    )
    pg_port = stack.free_port()
    postgres = stack.ChildProcess(
        "bench-postgres",
        _as_postgres(
            [
                str(pg_bin / "postgres"),
                "-D",
                str(data),
                "-p",
                str(pg_port),
                "-k",
                str(data),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "max_connections=300",
                "-c",
                "shared_preload_libraries=pg_stat_statements",
                "-c",
                "pg_stat_statements.track=all",
            ]
        ),
        dict(os.environ),
    )
    redis_port = stack.free_port()
    redis_dir = tmpdir / "redis"
    redis_dir.mkdir()
    redis = stack.ChildProcess(
        "bench-redis",
        [
            "redis-server",
            "--port",
            str(redis_port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--dir",
            str(redis_dir),
        ],
        dict(os.environ),
    )
    server_url = f"postgres://postgres@127.0.0.1:{pg_port}"
    redis_url = f"redis://127.0.0.1:{redis_port}/0"
    with infra.running(postgres), infra.running(redis):
        postgres.wait_until(lambda: _pg_answers(server_url), what="PostgreSQL answer", timeout=60)
        redis.wait_until(lambda: stack.redis_ping(redis_url), what="Redis PONG", timeout=30)
        try:
            yield Servers(server_url, redis_url, postgres.pid, redis.pid)
        finally:
            postgres.stop(timeout=30)
            shutil.rmtree(data, ignore_errors=True)


def _pg_answers(server_url: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(f"{server_url}/postgres", connect_timeout=2):
            return True
    except psycopg.OperationalError:
        return False


def prepare_database(world: infra.World) -> None:
    """After migrations: the statement counter, and one role per process kind."""
    import psycopg

    with psycopg.connect(world.database_url, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        for kind in KINDS:
            conn.execute(f"CREATE ROLE {role(kind)} LOGIN SUPERUSER")


def database_url_as(world: infra.World, kind: str) -> str:
    return world.database_url.replace("postgres@", f"{role(kind)}@", 1)


# --- counters -------------------------------------------------------------------------------


def sql_by_role(world: infra.World) -> dict[str, int]:
    """Statements executed so far in the bench database, by role (pg_stat_statements)."""
    import psycopg

    with psycopg.connect(world.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT r.rolname, sum(s.calls)::bigint FROM pg_stat_statements s "
            "JOIN pg_roles r ON r.oid = s.userid "
            "JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database() "
            "GROUP BY r.rolname"
        ).fetchall()
    return {name.removeprefix("bench_"): int(calls) for name, calls in rows if name != "postgres"}


def sql_statements(world: infra.World, kind: str, limit: int = 12) -> list[tuple[int, str]]:
    """The most executed statements of one process kind: (calls, text)."""
    import psycopg

    with psycopg.connect(world.database_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT s.calls, s.query FROM pg_stat_statements s "
            "JOIN pg_roles r ON r.oid = s.userid AND r.rolname = %s "
            "JOIN pg_database d ON d.oid = s.dbid AND d.datname = current_database() "
            "ORDER BY s.calls DESC LIMIT %s",
            (role(kind), limit),
        ).fetchall()
    return [(int(calls), " ".join(str(text).split())) for calls, text in rows]


def sql_reset(world: infra.World) -> None:
    import psycopg

    with psycopg.connect(world.database_url, autocommit=True) as conn:
        conn.execute("SELECT pg_stat_statements_reset()")


def redis_commands(redis_url: str) -> dict[str, int]:
    """Calls of each command so far (``INFO commandstats``), the harness's INFO left out."""
    import redis

    client = redis.Redis.from_url(redis_url)
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    return {
        name.removeprefix("cmdstat_"): int(value["calls"])
        for name, value in stats.items()
        if name != "cmdstat_info"
    }


def delta(after: dict[str, Any], before: dict[str, Any]) -> dict[str, float]:
    return {
        key: after[key] - before.get(key, 0) for key in after if after[key] - before.get(key, 0)
    }


@dataclass
class Meter:
    """CPU of named process trees, SQL by role and Redis commands over a window."""

    world: infra.World | None  # None: CPU only (the baseline has no server of ours)
    redis_url: str
    pids: dict[str, int]
    cpu: dict[str, float] = field(default_factory=dict)
    sql: dict[str, int] = field(default_factory=dict)
    redis: dict[str, int] = field(default_factory=dict)
    wall: float = 0.0

    def start(self) -> None:
        if self.world is not None:
            self.sql = sql_by_role(self.world)
            self.redis = redis_commands(self.redis_url)
        self.cpu = {kind: infra.tree_cpu_seconds(pid) for kind, pid in self.pids.items()}
        self.wall = time.monotonic()

    def stop(self) -> Window:
        cpu = {
            kind: infra.tree_cpu_seconds(pid) - self.cpu[kind] for kind, pid in self.pids.items()
        }
        wall = time.monotonic() - self.wall
        sql, commands = {}, {}
        if self.world is not None:
            sql = delta(sql_by_role(self.world), self.sql)
            commands = delta(redis_commands(self.redis_url), self.redis)
        return Window(wall=wall, cpu=cpu, sql=sql, redis=commands)


@dataclass
class Window:
    wall: float
    cpu: dict[str, float]  # seconds
    sql: dict[str, float]
    redis: dict[str, float]


# --- flame graphs ---------------------------------------------------------------------------


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise infra.BenchError("py-spy is not installed (make bench installs it)")
    return found


@contextmanager
def flame_graph(pid: int, svg: Path, *, duration: float, raw: bool = False) -> Iterator[None]:
    """Sample ``pid`` and its subprocesses for ``duration`` s into ``svg`` (py-spy);
    with ``raw``, collapsed stacks (``.txt``) instead, for comparing profiles as text."""
    if raw:
        svg = svg.with_suffix(".txt")
    argv = [
        py_spy(),
        "record",
        "--pid",
        str(pid),
        "--subprocesses",
        "--nonblocking",
        "--gil",  # samples holding the GIL: CPU, not threads waiting on I/O
        "--rate",
        "199",
        "--duration",
        str(max(1, int(duration))),
        "--nolineno",
        "--format",
        "raw" if raw else "flamegraph",
        "--output",
        str(svg),
    ]
    recorder = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        try:
            _, err = recorder.communicate(timeout=duration + 60)
        except subprocess.TimeoutExpired:
            recorder.kill()
            _, err = recorder.communicate()
        if recorder.returncode != 0 or not svg.exists():
            raise infra.BenchError(f"py-spy failed on pid {pid}: {err.decode()[-500:]}")
