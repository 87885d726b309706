"""The operator's topology: docker-compose.yml and the Dockerfile, checked without Docker.

The file is parsed and held to what the tests run: the web and worker services declare
exactly the commands tests/stack.py starts, and the last test runs those processes here
against real Redis and PostgreSQL.
"""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from pollstr.celery import app as celery_app
from tests import stack
from tests.integration.conftest import requires_postgres

BASE_DIR = stack.BASE_DIR
COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
DOCKERFILE = BASE_DIR / "Dockerfile"
APP_SERVICES = ("migrate", "web", "worker")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip(
        "yaml", reason="PyYAML is needed to read docker-compose.yml (add it to requirements-dev)"
    )
    return yaml.safe_load(COMPOSE_FILE.read_text())


def command_of(service: dict[str, Any]) -> list[str]:
    command = service["command"]
    return shlex.split(command) if isinstance(command, str) else [str(part) for part in command]


def test_compose_declares_the_operator_services(compose: dict[str, Any]) -> None:
    assert set(compose["services"]) == {"db", "redis", "migrate", "web", "worker"}
    assert compose["services"]["db"]["image"].startswith("postgres:16")
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    images = {compose["services"][name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, "migrate, web and worker must run the same image"


def test_workers_can_be_scaled(compose: dict[str, Any]) -> None:
    worker = compose["services"]["worker"]
    # `--scale worker=N` needs replicas that differ: no fixed name, hostname or port.
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert "ports" not in worker
    assert not any(part.startswith(("-n", "--hostname")) for part in command_of(worker))


def test_web_and_worker_run_the_commands_the_tests_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert command_of(services["web"]) == stack.web_command(host="0.0.0.0", port=8000)
    assert command_of(services["worker"]) == list(stack.WORKER_COMMAND)
    assert command_of(services["migrate"]) == list(stack.MIGRATE_COMMAND)
    assert services["web"]["ports"] == ["8000:8000"]


def test_services_start_in_dependency_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("db", "redis", "web", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"db": "service_healthy"}
    for name in ("web", "worker"):
        assert conditions(name) == {
            "db": "service_healthy",
            "redis": "service_healthy",
            "migrate": "service_completed_successfully",
        }
    assert services["migrate"].get("restart", "no") == "no"


def test_app_services_use_the_compose_database_and_redis(compose: dict[str, Any]) -> None:
    for name in APP_SERVICES:
        env = compose["services"][name]["environment"]
        assert re.fullmatch(
            r"postgres://pollstr:\$\{POSTGRES_PASSWORD:\?[^}]+\}@db:5432/pollstr",
            env["DATABASE_URL"],
        ), env["DATABASE_URL"]
        assert env["REDIS_URL"] == "redis://redis:6379/0"
        # Required, never defaulted: compose refuses to start without it.
        assert re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env["SECRET_KEY"])
        assert env["TWO_FACTOR_GATEWAY"] == "${TWO_FACTOR_GATEWAY:-sandbox}"


def test_every_variable_the_app_services_set_is_a_setting(compose: dict[str, Any]) -> None:
    read_by_settings = set(
        re.findall(
            r"env_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", (BASE_DIR / "pollstr/settings.py").read_text()
        )
    )
    for name in APP_SERVICES:
        unknown = set(compose["services"][name]["environment"]) - read_by_settings
        assert not unknown, f"{name} sets variables pollstr/settings.py never reads: {unknown}"


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    example = (BASE_DIR / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used, "no ${VAR} found in docker-compose.yml"
    missing = sorted(used - documented)
    assert not missing, f"docker-compose.yml reads {missing}, which .env.example doesn't document"


def test_the_image_runs_as_a_non_root_user_without_baked_secrets() -> None:
    lines = [line.strip() for line in DOCKERFILE.read_text().splitlines()]
    instructions = [line for line in lines if line and not line.startswith("#")]
    assert instructions[0] == "FROM python:3.11-slim"
    users = [line.split(None, 1)[1] for line in instructions if line.startswith("USER ")]
    assert users, "the Dockerfile never switches to a non-root USER"
    assert users[-1].split(":")[0] not in {"root", "0"}
    assert any("collectstatic" in line for line in instructions)
    # A secret in ENV or ARG would live in the image's metadata and every layer after it.
    for line in instructions:
        if line.startswith(("ENV ", "ARG ")):
            assert not re.search(r"SECRET|PASSWORD|VONAGE", line), line
    ignored = set((BASE_DIR / ".dockerignore").read_text().split())
    assert {".env", ".git", ".venv", "var"} <= ignored


def test_the_commands_name_modules_that_exist() -> None:
    module_path, _, attribute = stack.web_command(host="0.0.0.0", port=8000)[-1].partition(":")
    assert callable(getattr(importlib.import_module(module_path), attribute))
    assert stack.WORKER_COMMAND[1:3] == ("-A", "pollstr")
    assert importlib.import_module("pollstr").celery_app is celery_app


@pytest.mark.integration
@requires_postgres
def test_the_declared_processes_run_here_with_the_same_commands(
    child_env: Callable[..., dict[str, str]],
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
) -> None:
    prefix = f"{stack.SESSION_PREFIX}-compose"
    env = child_env(prefix)
    use_redis_namespace(prefix)

    # migrate: the test database is migrated already, so the command has nothing to do.
    migrate = subprocess.run(
        [sys.executable, *stack.MIGRATE_COMMAND[1:]],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    assert "No migrations to apply" in migrate.stdout

    with stack.celery_worker(env, name="compose") as worker, stack.daphne_server(env) as web:
        status, body = stack.http_get(web.url + "/")
        assert status == 200, body[:500]
        status, _ = stack.http_get(web.url + "/static/pollstr/site.css")
        assert status == 200
        replies = celery_app.control.ping(destination=[worker.nodename], timeout=5)
        assert replies == [{worker.nodename: {"ok": "pong"}}]
