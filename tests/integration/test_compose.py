"""The operator's topology: docker-compose.yml and the Dockerfile, checked without Docker.

The file is parsed and held to what the tests run: the web and worker services declare
exactly the commands tests/stack.py starts, and the last test runs those processes here
against real Redis and PostgreSQL.
"""

from __future__ import annotations

import importlib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pollstr.celery import app as celery_app
from tests import stack
from tests.integration.conftest import requires_postgres

BASE_DIR = stack.BASE_DIR
COMPOSE_FILE = BASE_DIR / "docker-compose.yml"
DOCKERFILE = BASE_DIR / "Dockerfile"
APP_SERVICES = ("migrate", "web", "worker", "worker-checks", "beat", "flower")
# Read by the process runners, not by settings: gunicorn, prometheus-client, Flower.
RUNNER_VARIABLES = {"WEB_CONCURRENCY", "PROMETHEUS_MULTIPROC_DIR", "FLOWER_BASIC_AUTH"}
# What `docker-compose config` needs to interpolate the file (the rest have defaults).
REQUIRED_ENV = {"POSTGRES_PASSWORD": "compose-check", "SECRET_KEY": "compose-check"}


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
    assert set(compose["services"]) == {
        "db",
        "redis",
        "migrate",
        "proxy",
        "web",
        "worker",
        "worker-checks",
        "beat",
        "flower",
    }
    assert compose["services"]["db"]["image"].startswith("postgres:16")
    assert compose["services"]["redis"]["image"].startswith("redis:7")
    images = {compose["services"][name]["image"] for name in APP_SERVICES}
    assert len(images) == 1, "migrate, web and worker must run the same image"


@pytest.mark.parametrize("name", ["web", "worker", "worker-checks"])
def test_web_and_workers_can_be_scaled(compose: dict[str, Any], name: str) -> None:
    worker = compose["services"][name]
    # `--scale <name>=N` needs replicas that differ: no fixed name, hostname or host port.
    assert "container_name" not in worker
    assert "hostname" not in worker
    assert "ports" not in worker
    assert not any(part.startswith(("-n", "--hostname")) for part in command_of(worker))


def test_code_checks_have_a_worker_of_their_own_and_every_worker_serves_them(
    compose: dict[str, Any],
) -> None:
    from pollstr.celery import app as celery_app

    services = compose["services"]
    assert command_of(services["worker-checks"]) == list(stack.CHECKS_WORKER_COMMAND)
    assert not any(p.startswith(("--queues", "-Q")) for p in command_of(services["worker"]))
    routes = celery_app.conf.task_routes
    assert routes["two_factor.check_code"] == {"queue": "checks"}
    assert "two_factor.send_code" not in routes
    assert set(celery_app.conf.task_queues or {}) >= {"celery", "checks"}


def test_web_and_worker_run_the_commands_the_tests_run(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert command_of(services["web"]) == stack.web_command(host="0.0.0.0", port=8000)
    assert command_of(services["worker"]) == list(stack.WORKER_COMMAND)
    assert command_of(services["beat"]) == list(stack.BEAT_COMMAND)
    assert command_of(services["flower"]) == list(stack.FLOWER_COMMAND)
    assert command_of(services["migrate"]) == list(stack.MIGRATE_COMMAND)


def test_the_web_runs_the_lean_uvicorn_worker(compose: dict[str, Any]) -> None:
    # pollstr/web_server.py: uvicorn's worker without websocket compression, whose
    # sockets let their handshake go. The image's default command runs it too.
    command = command_of(compose["services"]["web"])
    assert command[command.index("--worker-class") + 1] == "pollstr.web_server.UvicornWorker"
    dockerfile_cmd = (BASE_DIR / "Dockerfile").read_text().rsplit("\nCMD ", 1)[1]
    assert json.loads(dockerfile_cmd) == stack.web_command(host="0.0.0.0", port=8000)


def test_only_the_proxy_publishes_the_site(compose: dict[str, Any]) -> None:
    services = compose["services"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"proxy", "flower"}
    assert services["proxy"]["ports"] == ["${PROXY_PORT:-8000}:80"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    # The proxy reaches the web replicas on the port their command binds.
    assert services["web"]["expose"] == ["8000"]
    assert "0.0.0.0:8000" in command_of(services["web"])
    # The web believes X-Forwarded-For for exactly the proxy's hop (pollstr/client_ip.py).
    assert services["web"]["environment"]["TRUSTED_PROXY_COUNT"] == "${TRUSTED_PROXY_COUNT:-1}"
    assert "TRUSTED_PROXY_COUNT" not in services["worker"]["environment"]


def test_the_proxy_runs_the_repository_s_nginx_configuration(compose: dict[str, Any]) -> None:
    proxy = compose["services"]["proxy"]
    image, _, tag = proxy["image"].partition(":")
    assert image == "nginx"
    # `resolve` on an upstream server (deploy/nginx/upstream.conf) is in open-source nginx
    # from 1.27.3 on.
    assert tuple(int(part) for part in tag.split(".")[:2]) >= (1, 28), tag
    mounts = {}
    for volume in proxy["volumes"]:
        source, target, mode = volume.split(":")
        assert mode == "ro", volume
        mounts[target] = BASE_DIR / source
    assert mounts == {
        "/etc/nginx/nginx.conf": BASE_DIR / "deploy/nginx/nginx.conf",
        "/etc/nginx/pollstr": BASE_DIR / "deploy/nginx",
    }
    assert all(path.exists() for path in mounts.values())
    assert proxy["depends_on"] == {"web": {"condition": "service_started"}}
    assert any("/healthz" in str(part) for part in proxy["healthcheck"]["test"])
    assert proxy["restart"] == "unless-stopped"
    assert {"cpus", "memory"} <= set(proxy["deploy"]["resources"]["limits"])
    upstream = (BASE_DIR / "deploy/nginx/upstream.conf").read_text()
    # Docker's DNS, asked again every few seconds: replicas join and leave without a reload.
    assert re.search(r"^resolver 127\.0\.0\.11 valid=\d+s", upstream, re.MULTILINE)
    assert re.search(r"^\s*server web:8000 resolve\b", upstream, re.MULTILINE)
    assert re.search(r"^\s*zone pollstr_web ", upstream, re.MULTILINE)


def test_services_start_in_dependency_order(compose: dict[str, Any]) -> None:
    services = compose["services"]
    for name in ("db", "redis", "web", "worker"):
        assert "healthcheck" in services[name], f"{name} has no healthcheck"

    def conditions(name: str) -> dict[str, str]:
        return {dep: spec["condition"] for dep, spec in services[name]["depends_on"].items()}

    assert conditions("migrate") == {"db": "service_healthy"}
    assert conditions("beat") == {
        "redis": "service_healthy",
        "migrate": "service_completed_successfully",
    }
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
    settings_source = "\n".join(
        path.read_text() for path in (BASE_DIR / "pollstr/settings").glob("*.py")
    )
    read_by_settings = set(re.findall(r"env_\w+\(\s*\"([A-Z][A-Z0-9_]*)\"", settings_source))
    for name in APP_SERVICES:
        unknown = set(compose["services"][name]["environment"]) - read_by_settings
        unknown -= RUNNER_VARIABLES
        assert not unknown, f"{name} sets variables pollstr/settings/ never reads: {unknown}"


@pytest.mark.parametrize(
    "name",
    [
        "TWO_FACTOR_WORKFLOW",
        "TWO_FACTOR_WORKFLOW_BY_REGION",
        "TWO_FACTOR_SITE_URL",
        "VONAGE_WHATSAPP_FROM",
    ],
)
def test_an_operator_s_choice_of_channels_reaches_every_app_service(
    compose: dict[str, Any], name: str
) -> None:
    # Set in .env, it must reach web (the start page, silent auth's way back) and the
    # workers (the workflow sent to Verify), or `docker compose up` silently ignores it.
    for service in ("web", "worker", "worker-checks", "beat"):
        assert compose["services"][service]["environment"][name] == f"${{{name}:-}}", service


def test_every_variable_compose_reads_is_documented_in_env_example() -> None:
    used = set(re.findall(r"(?<!\$)\$\{([A-Z][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    example = (BASE_DIR / ".env.example").read_text()
    documented = set(re.findall(r"^([A-Z][A-Z0-9_]*)=", example, flags=re.MULTILINE))
    assert used, "no ${VAR} found in docker-compose.yml"
    missing = sorted(used - documented)
    assert not missing, f"docker-compose.yml reads {missing}, which .env.example doesn't document"


def test_the_image_compiles_the_translation_catalogues() -> None:
    instructions = DOCKERFILE.read_text()
    assert re.search(r"apt-get install [^\n]*\bgettext\b", instructions)
    assert "manage.py compilemessages" in instructions
    assert "locale/**/*.mo" in (BASE_DIR / ".dockerignore").read_text()


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


# --- a real Compose parser, the schema, and what operators tune -------------------------------

COMPOSE_SPEC = Path("/usr/lib/python3/dist-packages/compose/config/compose_spec.json")
NO_COMPOSE = (
    "the compose checks need Debian's docker-compose package (its parser and its copy of "
    "the Compose Specification schema): apt-get install docker-compose"
)


def compose_config(tmp_path: Path, *args: str, env: dict[str, str] | None = None) -> Any:
    if shutil.which("docker-compose") is None:
        pytest.skip(NO_COMPOSE)
    # A project directory of its own: no .env of a developer's checkout is read.
    environment = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path), **(env or {})}
    return subprocess.run(
        ["docker-compose", "-f", str(COMPOSE_FILE), "--project-directory", str(tmp_path), *args],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_docker_compose_parses_and_validates_the_file(tmp_path: Path) -> None:
    checked = compose_config(tmp_path, "config", "-q", env=REQUIRED_ENV)
    assert checked.returncode == 0, checked.stderr

    missing = compose_config(tmp_path, "config", "-q", env={"SECRET_KEY": "x"})
    assert missing.returncode != 0
    assert "set POSTGRES_PASSWORD" in missing.stderr


def test_docker_compose_rejects_a_broken_copy(tmp_path: Path) -> None:
    # The parser above is not a rubber stamp: the same file with one wrong type fails.
    broken = tmp_path / "docker-compose.yml"
    broken.write_text(
        COMPOSE_FILE.read_text().replace("stop_grace_period: 60s", "stop_grace_period: [60]")
    )
    if shutil.which("docker-compose") is None:
        pytest.skip(NO_COMPOSE)
    result = subprocess.run(
        ["docker-compose", "-f", str(broken), "config", "-q"],
        env={"PATH": os.environ.get("PATH", ""), **REQUIRED_ENV},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "stop_grace_period" in result.stderr


def test_the_interpolated_file_validates_against_the_compose_specification(
    tmp_path: Path,
) -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in requirements-dev")
    yaml = pytest.importorskip("yaml", reason="PyYAML is in requirements-dev")
    if not COMPOSE_SPEC.exists():
        pytest.skip(NO_COMPOSE)
    schema = json.loads(COMPOSE_SPEC.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    # With the monitoring profile: flower is in the output too.
    rendered = compose_config(tmp_path, "--profile", "monitoring", "config", env=REQUIRED_ENV)
    assert rendered.returncode == 0, rendered.stderr
    document = yaml.safe_load(rendered.stdout)
    assert {"beat", "flower", "proxy", "web", "worker"} <= set(document["services"])
    assert "ports" not in document["services"]["web"]
    assert document["services"]["web"]["environment"]["TRUSTED_PROXY_COUNT"] == "1"

    errors = sorted(validator.iter_errors(document), key=lambda error: error.path)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]
    # And the raw file (anchors resolved by YAML) against the same schema.
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    assert not list(validator.iter_errors(raw))
    # A wrong type is caught by this validator too.
    raw["services"]["worker"]["deploy"]["resources"]["limits"]["memory"] = ["512M"]
    assert list(validator.iter_errors(raw))


def test_the_worker_pool_and_concurrency_come_from_the_environment(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    env = compose["services"]["worker"]["environment"]
    assert env["CELERY_WORKER_POOL"] == "${CELERY_WORKER_POOL:-threads}"
    assert env["CELERY_WORKER_CONCURRENCY"] == "${CELERY_WORKER_CONCURRENCY:-50}"
    assert not any(
        p.startswith(("--pool", "-P", "--concurrency", "-c")) for p in stack.WORKER_COMMAND
    )
    tuned = compose_config(
        tmp_path,
        "config",
        env={**REQUIRED_ENV, "CELERY_WORKER_POOL": "threads", "CELERY_WORKER_CONCURRENCY": "8"},
    )
    assert tuned.returncode == 0, tuned.stderr
    assert "CELERY_WORKER_POOL: threads" in tuned.stdout
    assert "CELERY_WORKER_CONCURRENCY: '8'" in tuned.stdout


def test_settings_hand_the_pool_and_concurrency_to_celery(tmp_path: Path) -> None:
    probe = (
        "from pollstr.celery import app; c = app.conf; "
        "print(c.worker_pool, c.worker_concurrency, c.worker_hijack_root_logger)"
    )
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("CELERY_", "DATABASE_"))},
        "CELERY_WORKER_POOL": "threads",
        "CELERY_WORKER_CONCURRENCY": "7",
        "POLLSTR_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.stdout.split() == ["threads", "7", "False"], result.stderr


def test_the_web_uses_the_cores_and_the_worker_stops_after_its_tasks(
    compose: dict[str, Any],
) -> None:
    from django.conf import settings

    services = compose["services"]
    assert services["web"]["environment"]["WEB_CONCURRENCY"] == "${WEB_CONCURRENCY:-2}"

    def seconds(value: str) -> int:
        match = re.fullmatch(r"(\d+)s", value)
        assert match, value
        return int(match.group(1))

    worker_grace = seconds(services["worker"]["stop_grace_period"])
    assert worker_grace > settings.CELERY_TASK_TIME_LIMIT
    assert worker_grace > celery_app.conf.task_time_limit
    assert seconds(services["web"]["stop_grace_period"]) > 25  # gunicorn's graceful timeout
    for name in ("proxy", "web", "worker", "beat", "flower"):
        limits = services[name]["deploy"]["resources"]["limits"]
        assert {"cpus", "memory"} <= set(limits), name
        assert services[name]["restart"] == "unless-stopped", name


def test_beat_runs_once_and_flower_only_with_the_monitoring_profile(
    compose: dict[str, Any], tmp_path: Path
) -> None:
    services = compose["services"]
    assert "profiles" not in services["beat"]
    assert services["flower"]["profiles"] == ["monitoring"]
    assert services["flower"]["ports"] == ["127.0.0.1:5555:5555"]
    # The parser keeps the profile (docker-compose 1.29 lists every service either way;
    # `up` without --profile monitoring leaves flower out).
    rendered = compose_config(tmp_path, "config", env=REQUIRED_ENV)
    assert rendered.returncode == 0, rendered.stderr
    yaml = pytest.importorskip("yaml", reason="PyYAML is in requirements-dev")
    parsed = yaml.safe_load(rendered.stdout)["services"]
    assert parsed["flower"]["profiles"] == ["monitoring"]
    assert "profiles" not in parsed["beat"]


def test_healthchecks_use_the_health_endpoint_and_the_heartbeat(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert any("/healthz" in str(part) for part in services["web"]["healthcheck"]["test"])
    worker_check = services["worker"]["healthcheck"]["test"]
    assert worker_check == ["CMD", "/app/scripts/worker-healthcheck"]
    assert "inspect" not in " ".join(worker_check)
    assert services["worker"]["environment"]["WORKER_HEARTBEAT_FILE"]


HEALTHCHECK = BASE_DIR / "scripts" / "worker-healthcheck"


def test_the_worker_healthcheck_reads_the_heartbeat_age(tmp_path: Path) -> None:
    beat = tmp_path / "heartbeat"

    def run() -> subprocess.CompletedProcess[str]:
        env = {"PATH": os.environ["PATH"], "WORKER_HEARTBEAT_FILE": str(beat)}
        return subprocess.run(
            [str(HEALTHCHECK)], env=env, capture_output=True, text=True, timeout=10, check=False
        )

    assert run().returncode == 1
    beat.touch()
    assert run().returncode == 0
    old = time.time() - 120
    os.utime(beat, (old, old))
    stale = run()
    assert stale.returncode == 1
    assert "unhealthy" in stale.stdout


@pytest.mark.integration
@requires_postgres
def test_the_declared_processes_run_here_with_the_same_commands(
    child_env: Callable[..., dict[str, str]],
    use_redis_namespace: Callable[[str], None],
    transactional_db: None,
    tmp_path: Path,
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

    heartbeat = tmp_path / "heartbeat"
    env = {**env, "WORKER_HEARTBEAT_FILE": str(heartbeat), "WEB_CONCURRENCY": "2"}
    with (
        stack.celery_worker(env, name="compose") as worker,
        stack.web_server(env) as web,
        stack.celery_beat(env),
    ):
        status, body = stack.http_get(web.url + "/")
        assert status == 200, body[:500]
        status, _ = stack.http_get(web.url + "/static/pollstr/site.css")
        assert status == 200
        replies = celery_app.control.ping(destination=[worker.nodename], timeout=5)
        assert replies == [{worker.nodename: {"ok": "pong"}}]
        # The worker's heartbeat makes the web ready and its container healthy.
        status, body = stack.http_get(web.url + "/readyz")
        assert status == 200, body
        assert json.loads(body)["checks"]["worker"]["ok"] is True
        healthcheck = subprocess.run(
            [str(HEALTHCHECK)],
            env={"PATH": os.environ["PATH"], "WORKER_HEARTBEAT_FILE": str(heartbeat)},
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        assert healthcheck.returncode == 0, healthcheck.stdout
        assert web.log_text().count("Booting worker with pid") == 2
        # Each process froze what it loaded once started (pollstr/collector.py).
        assert web.log_text().count("Garbage collector settled") == 2
        assert "Garbage collector settled" in worker.log_text()
