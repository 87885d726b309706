"""DATABASE_URL and the DATABASE_* limits: a bounded pool, timeouts, loud bad values."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection
from django.db.utils import ConnectionHandler

from pollstr.env import DatabaseLimits, database_from_url
from tests import stack

ROOT = Path(__file__).resolve().parent.parent
URL = "postgres://app:secret@db.example:5433/pollstr"


def test_postgres_gets_a_bounded_pool_and_no_persistent_connections():
    limits = DatabaseLimits(
        pool_min_size=1, pool_max_size=7, pool_timeout=2.5, statement_timeout_ms=1200
    )

    entry = database_from_url(URL, limits)

    assert entry["OPTIONS"]["pool"] == {
        "min_size": 1,
        "max_size": 7,
        "timeout": 2.5,
        "name": "pollstr",
    }
    assert entry["OPTIONS"]["options"] == "-c statement_timeout=1200"
    assert entry["OPTIONS"]["connect_timeout"] == "5"
    assert entry["CONN_MAX_AGE"] == 0
    assert entry["CONN_HEALTH_CHECKS"] is True
    assert entry["ENGINE"] == "pollstr.db.postgresql"
    assert (entry["USER"], entry["HOST"], entry["PORT"]) == ("app", "db.example", "5433")


def test_statements_are_bound_by_the_server_and_prepared_after_five_runs():
    options = database_from_url(URL)["OPTIONS"]

    assert options["server_side_binding"] is True
    assert options["prepare_threshold"] == 5
    # 0 (behind a pooler that cannot keep prepared statements): never prepare.
    assert (
        database_from_url(URL, DatabaseLimits(prepare_threshold=0))["OPTIONS"]["prepare_threshold"]
        is None
    )


def test_a_zero_statement_timeout_sets_none():
    entry = database_from_url(URL, DatabaseLimits(statement_timeout_ms=0))

    assert "options" not in entry["OPTIONS"]


def test_parameters_in_the_url_win_over_the_limits():
    url = URL + "?sslmode=require&connect_timeout=9&options=-c%20statement_timeout%3D0"

    options = database_from_url(url, DatabaseLimits(statement_timeout_ms=800))["OPTIONS"]

    assert options["sslmode"] == "require"
    assert options["connect_timeout"] == "9"
    # libpq applies -c settings in order: the URL's comes last, so it is the one in force.
    assert options["options"] == "-c statement_timeout=800 -c statement_timeout=0"


def test_a_pool_whose_minimum_exceeds_its_maximum_is_refused():
    with pytest.raises(
        ImproperlyConfigured, match=r"DATABASE_POOL_MIN_SIZE .* DATABASE_POOL_MAX_SIZE"
    ):
        DatabaseLimits(pool_min_size=5, pool_max_size=4)


def test_sqlite_is_unchanged_by_the_limits():
    entry = database_from_url("sqlite:///var/x.sqlite3", DatabaseLimits(pool_max_size=3))

    assert entry == {"ENGINE": "django.db.backends.sqlite3", "NAME": "var/x.sqlite3"}


def _wrapper(entry: dict[str, Any]) -> Any:
    # Not "default": Django keeps pools per alias for the whole process.
    databases = {"default": {"ENGINE": "django.db.backends.dummy"}, "pooled": entry}
    return ConnectionHandler(databases)["pooled"]


def test_django_accepts_the_pool_with_these_settings():
    # Django refuses a pool with CONN_MAX_AGE != 0 when it builds the pool; building it
    # opens no connection (open=False), so no server is needed here.
    wrapper = _wrapper(database_from_url(URL, DatabaseLimits()))
    try:
        pool = wrapper.pool
        assert (pool.min_size, pool.max_size, pool.timeout) == (2, 10, 5.0)
        assert pool.closed
    finally:
        wrapper.close_pool()


@pytest.mark.postgres
def test_a_pooled_connection_runs_with_the_statement_timeout(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite has no statement timeout")
    limits = DatabaseLimits(pool_min_size=0, pool_max_size=1, statement_timeout_ms=1234)
    entry = database_from_url(stack.database_url(connection.settings_dict), limits)
    wrapper = _wrapper(entry)
    try:
        with wrapper.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            assert cursor.fetchone() == ("1234ms",)
    finally:
        wrapper.close()
        wrapper.close_pool()


@pytest.mark.postgres
@pytest.mark.parametrize("threshold", [3, 0])
def test_a_statement_run_often_enough_is_prepared_on_the_server(db: None, threshold) -> None:
    """The server parses and plans a repeated statement once per connection (psycopg
    prepares it at the threshold); with 0 it never does."""
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): SQLite has no prepared statements")
    limits = DatabaseLimits(pool_min_size=0, pool_max_size=1, prepare_threshold=threshold)
    entry = database_from_url(stack.database_url(connection.settings_dict), limits)
    wrapper = _wrapper(entry)
    try:
        with wrapper.cursor() as cursor:
            for value in range(4):
                cursor.execute("SELECT %s::int + 1", [value])
                assert cursor.fetchone() == (value + 1,)
            cursor.execute("SELECT statement FROM pg_prepared_statements")
            prepared = [row[0] for row in cursor.fetchall()]
    finally:
        wrapper.close()
        wrapper.close_pool()
    if threshold:
        assert prepared == ["SELECT $1::int + 1"]
    else:
        assert prepared == []


@pytest.mark.django_db
def test_the_pool_checks_a_quiet_connection_without_a_round_trip_and_an_ended_one_fully(
    monkeypatch,
):
    """pollstr/db/postgresql/base.py: nothing is sent for an idle connection that is
    fine; one whose backend the server ended has its goodbye waiting on the socket, and
    gets psycopg_pool's full check, which fails (the pool then opens another)."""
    import psycopg
    from psycopg_pool import ConnectionPool

    from pollstr.db.postgresql.base import connection_check

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the check is of a PostgreSQL socket")
    full_checks: list[object] = []
    real = ConnectionPool.check_connection
    monkeypatch.setattr(
        ConnectionPool,
        "check_connection",
        staticmethod(lambda conn: full_checks.append(conn) or real(conn)),
    )
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    with psycopg.connect(**params, autocommit=True) as idle:
        pid = idle.info.backend_pid
        connection_check(idle)
        assert full_checks == []

        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            with connection.cursor() as cursor:
                cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
                if cursor.fetchone() == (0,):
                    break
            time.sleep(0.05)
        with pytest.raises(psycopg.OperationalError):
            connection_check(idle)
        assert full_checks == [idle]


# --- the environment variables, read by settings at start-up ---------------------------------


def _settings_with(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    code = (
        "import json; from pollstr import settings as s; "
        "print(json.dumps(s.DATABASES['default'].get('OPTIONS', {}), default=str))"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "SECRET_KEY": "x", **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


def test_the_limits_come_from_the_environment():
    result = _settings_with(
        DATABASE_URL=URL,
        DATABASE_POOL_MIN_SIZE="0",
        DATABASE_POOL_MAX_SIZE="3",
        DATABASE_POOL_TIMEOUT="1.5",
        DATABASE_STATEMENT_TIMEOUT_MS="2500",
        DATABASE_CONNECT_TIMEOUT="4",
        DATABASE_PREPARE_THRESHOLD="0",
    )

    assert result.returncode == 0, result.stderr
    options = json.loads(result.stdout)
    assert options["pool"]["min_size"] == 0
    assert options["pool"]["max_size"] == 3
    assert options["pool"]["timeout"] == 1.5
    assert options["options"] == "-c statement_timeout=2500"
    assert options["connect_timeout"] == "4"
    assert options["prepare_threshold"] is None


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DATABASE_POOL_MAX_SIZE", "ten"),
        ("DATABASE_POOL_MAX_SIZE", "0"),
        ("DATABASE_POOL_MIN_SIZE", "-1"),
        ("DATABASE_POOL_TIMEOUT", "0"),
        ("DATABASE_STATEMENT_TIMEOUT_MS", "5s"),
        ("DATABASE_CONNECT_TIMEOUT", "1"),
        ("DATABASE_PREPARE_THRESHOLD", "-1"),
    ],
)
def test_a_bad_limit_stops_start_up_naming_the_variable(name, value):
    result = _settings_with(DATABASE_URL=URL, **{name: value})

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr


def test_a_minimum_above_the_maximum_stops_start_up():
    result = _settings_with(
        DATABASE_URL=URL, DATABASE_POOL_MIN_SIZE="8", DATABASE_POOL_MAX_SIZE="4"
    )

    assert result.returncode != 0
    assert "DATABASE_POOL_MIN_SIZE (8) must not exceed DATABASE_POOL_MAX_SIZE (4)" in result.stderr


def test_the_embedded_default_still_uses_sqlite_without_a_pool():
    result = _settings_with()

    assert result.returncode == 0, result.stderr
    assert "pool" not in json.loads(result.stdout)


@pytest.mark.django_db
def test_the_pool_check_works_past_select_s_descriptor_limit():
    """A web process holding thousands of sockets has descriptors above 1024, which
    select() refuses: the check must still answer (quietly) for such a connection."""
    import resource
    import socket

    import psycopg

    from pollstr.db.postgresql.base import connection_check

    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL): the check is of a PostgreSQL socket")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard < 1200:
        pytest.skip(f"the descriptor limit ({hard}) is too low to go past 1024 here")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    fillers = [socket.socket() for _ in range(1100)]
    try:
        params = connection.get_connection_params()
        params.pop("cursor_factory", None)
        with psycopg.connect(**params, autocommit=True) as high:
            assert high.fileno() > 1024
            connection_check(high)  # no ValueError, no exception at all
    finally:
        for filler in fillers:
            filler.close()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
