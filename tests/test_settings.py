from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


SETTINGS_MODULES = sorted((ROOT / "pollstr" / "settings").glob("*.py"))


def _settings_variables() -> set[str]:
    source = "\n".join(path.read_text() for path in SETTINGS_MODULES)
    return set(re.findall(r'env_[a-z]+\(\s*"([A-Z0-9_]+)"', source))


def test_the_settings_package_is_what_django_loads():
    from django.conf import settings

    from pollstr.settings import operators, two_factor

    assert {path.stem for path in SETTINGS_MODULES} >= {
        "__init__",
        "django",
        "two_factor",
        "vonage",
        "celery",
        "operators",
    }
    assert os.environ["DJANGO_SETTINGS_MODULE"] == "pollstr.settings"
    assert settings.TWO_FACTOR_VERIFIED_MAX_AGE == two_factor.TWO_FACTOR_VERIFIED_MAX_AGE
    assert settings.WORKER_HEARTBEAT_MAX_AGE == operators.WORKER_HEARTBEAT_MAX_AGE


def test_each_setting_is_defined_in_one_module_only():
    # The package star-imports every module: a name defined twice would be decided by the
    # order of the imports, silently.
    defined: dict[str, list[str]] = {}
    for path in SETTINGS_MODULES:
        for name in re.findall(r"^([A-Z][A-Z0-9_]*)\b[^\n=]*=(?!=)", path.read_text(), re.M):
            defined.setdefault(name, []).append(path.stem)
    twice = {name: modules for name, modules in defined.items() if len(set(modules)) > 1}

    assert "TWO_FACTOR_VERIFIED_MAX_AGE" in defined
    assert not twice, twice


# Documented for docker compose, which reads them itself.
# Read by docker-compose or gunicorn, not by Django's settings.
COMPOSE_ONLY = {
    "POSTGRES_PASSWORD",
    "FLOWER_BASIC_AUTH",
    "WEB_CONCURRENCY",
    "WEB_CPUS",
    "WEB_MEMORY",
    "WORKER_CPUS",
    "WORKER_MEMORY",
    "PROXY_PORT",
    "PROXY_CPUS",
    "PROXY_MEMORY",
}


def _documented_variables() -> set[str]:
    lines = (ROOT / ".env.example").read_text().splitlines()
    return {line.split("=", 1)[0] for line in lines if re.match(r"^[A-Z0-9_]+=", line)}


def test_every_environment_variable_is_documented_in_env_example():
    missing = _settings_variables() - _documented_variables()
    assert not missing, f"add to .env.example: {sorted(missing)}"


def test_env_example_documents_nothing_that_does_not_exist():
    unknown = _documented_variables() - _settings_variables() - COMPOSE_ONLY
    assert not unknown, f"not read by settings: {sorted(unknown)}"


def _load_settings(**env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    return subprocess.run(
        [sys.executable, "-c", "from pollstr import settings"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("DEBUG", "maybe"),
        ("TWO_FACTOR_CODE_LENGTH", "six"),
        ("TWO_FACTOR_CODE_LENGTH", "3"),
        ("TWO_FACTOR_GATEWAY", "twilio"),
        ("TWO_FACTOR_SANDBOX_FAILURE_RATE", "2"),
        ("DATABASE_URL", "mysql://localhost/x"),
        ("TWO_FACTOR_WEBOTP_HOST", "https://polls.example.org/"),
        ("VONAGE_VERIFY_TEMPLATE_ID", "my-template"),
        ("TWO_FACTOR_WORKFLOW", "sms,pigeon"),
        ("TWO_FACTOR_WORKFLOW", "sms,voice,sms"),
        ("TWO_FACTOR_WORKFLOW", ","),
        ("TWO_FACTOR_WORKFLOW", "sms,,voice"),
        ("TWO_FACTOR_WORKFLOW_BY_REGION", "BRA=whatsapp,sms"),
        ("TWO_FACTOR_WORKFLOW_BY_REGION", "BR:whatsapp"),
        ("TWO_FACTOR_WORKFLOW_BY_REGION", "BR=whatsapp;BR=sms"),
        ("TWO_FACTOR_WORKFLOW_BY_REGION", "IN=whatsapp,telegram"),
        ("VONAGE_WHATSAPP_FROM", "+0044 7700"),
    ],
)
def test_a_bad_setting_stops_start_up_with_a_clear_message(name, value):
    result = _load_settings(**{name: value, "SECRET_KEY": "x"})
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert name in result.stderr or value in result.stderr


def test_an_empty_variable_means_its_default():
    code = "from pollstr import settings as s; print(s.SECURE, s.CELERY_BROKER_URL, s.DEBUG)"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env = {**clean, "SECRET_KEY": "x", "SECURE_COOKIES": "", "CELERY_BROKER_URL": "", "DEBUG": ""}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert out == ["False", "memory://localhost/", "False"]


@pytest.mark.parametrize(
    ("allowed_hosts", "host"),
    [
        ("*", ""),
        (".example.org,polls.example.org", "polls.example.org"),
        ("localhost,127.0.0.1", "localhost"),
    ],
)
def test_the_webotp_host_is_the_first_plain_allowed_host(allowed_hosts, host):
    code = "from pollstr import settings as s; print(repr(s.TWO_FACTOR_WEBOTP_HOST))"
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env = {**clean, "SECRET_KEY": "x", "ALLOWED_HOSTS": allowed_hosts}
    env.pop("TWO_FACTOR_WEBOTP_HOST", None)
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert out == repr(host)


def test_production_database_without_a_secret_key_refuses_to_start():
    env = {"DATABASE_URL": "postgres://localhost/pollstr", "SECRET_KEY": ""}
    result = _load_settings(**env)
    assert result.returncode != 0
    assert "SECRET_KEY must be set" in result.stderr


def test_database_url_selects_postgres_and_redis_url_selects_redis():
    code = (
        "from pollstr import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['NAME'], "
        "s.CACHES['default']['BACKEND'], s.CHANNEL_LAYERS['default']['BACKEND'], "
        "s.CELERY_BROKER_URL, s.CELERY_EMBEDDED_WORKER)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    clean.pop("CELERY_EMBEDDED_WORKER", None)
    env = {
        **clean,
        "SECRET_KEY": "x",
        "DATABASE_URL": "postgres://u:p%40ss@db:5432/pollstr",
        "REDIS_URL": "redis://redis:6379/0",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.split()
    assert out == [
        "pollstr.db.postgresql",
        "pollstr",
        "pollstr.cache.RedisCache",
        "pollstr.channel_layers.RedisChannelLayer",
        "redis://redis:6379/0",
        "False",
    ]


def test_the_embedded_default_needs_no_service():
    code = (
        "from pollstr import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.CELERY_BROKER_URL, "
        "s.CHANNEL_LAYERS['default']['BACKEND'], s.CELERY_EMBEDDED_WORKER, s.TWO_FACTOR_GATEWAY)"
    )
    clean = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DATABASE_", "REDIS_", "SECRET_KEY", "CELERY_", "TWO_FACTOR_"))
    }
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "POLLSTR_VAR_DIR": str(ROOT / "var" / "test-embedded")},
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=True,
    ).stdout.split()
    assert out == [
        "django.db.backends.sqlite3",
        "memory://localhost/",
        "pollstr.channel_layers.EmbeddedChannelLayer",
        "True",
        "sandbox",
    ]


@pytest.mark.parametrize(
    ("env", "said"),
    [
        ({"TWO_FACTOR_WORKFLOW": "sms,pigeon"}, "unknown channel 'pigeon'"),
        ({"TWO_FACTOR_WORKFLOW": "voice,sms,voice"}, "'voice' appears twice"),
        ({"TWO_FACTOR_WORKFLOW": ""}, ""),  # empty: the default
        ({"TWO_FACTOR_WORKFLOW_BY_REGION": "IN=whatsapp,telegram"}, "(IN): unknown channel"),
        ({"TWO_FACTOR_WORKFLOW_BY_REGION": "BRA=sms"}, "'BRA=sms' is not REGION=channel"),
        ({"TWO_FACTOR_WORKFLOW_BY_REGION": "BR=sms;br=voice"}, "region BR appears twice"),
        (
            {"TWO_FACTOR_GATEWAY": "vonage", "TWO_FACTOR_WORKFLOW_BY_REGION": "BR=whatsapp,sms"},
            "set VONAGE_WHATSAPP_FROM",
        ),
        ({"TWO_FACTOR_WORKFLOW": "sms,silent_auth"}, "'silent_auth' can only be the first step"),
        ({"TWO_FACTOR_WORKFLOW": "silent_auth"}, "sends no code"),
        (
            {
                "TWO_FACTOR_GATEWAY": "vonage",
                "VONAGE_API_KEY": "k",
                "VONAGE_API_SECRET": "s",
                "TWO_FACTOR_WORKFLOW": "silent_auth,sms",
                "TWO_FACTOR_SITE_URL": "https://polls.example.org",
            },
            "needs VONAGE_APPLICATION_ID and VONAGE_PRIVATE_KEY",
        ),
        (
            {
                "TWO_FACTOR_GATEWAY": "vonage",
                "VONAGE_APPLICATION_ID": "app",
                "VONAGE_PRIVATE_KEY": "key",
                "TWO_FACTOR_WORKFLOW": "silent_auth,sms",
                "TWO_FACTOR_SITE_URL": "http://polls.example.org",
            },
            "set TWO_FACTOR_SITE_URL to the site's https",
        ),
        ({"TWO_FACTOR_SITE_URL": "polls.example.org"}, "TWO_FACTOR_SITE_URL must be the site"),
    ],
)
def test_a_bad_workflow_names_the_bad_value(env, said):
    result = _load_settings(**env, SECRET_KEY="x", VONAGE_WHATSAPP_FROM="")
    if not said:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode != 0
    assert said in result.stderr.splitlines()[-1]


def test_workflows_are_read_per_region_and_a_whatsapp_sender_without_plus():
    code = (
        "from pollstr import settings as s; "
        "print(s.TWO_FACTOR_WORKFLOW, s.TWO_FACTOR_WORKFLOW_BY_REGION, s.VONAGE_WHATSAPP_FROM)"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env = {
        **clean,
        "SECRET_KEY": "x",
        "TWO_FACTOR_GATEWAY": "vonage",
        "TWO_FACTOR_WORKFLOW": "sms, WhatsApp ,voice",
        "TWO_FACTOR_WORKFLOW_BY_REGION": "br=whatsapp,sms; IN=whatsapp,voice;",
        "VONAGE_WHATSAPP_FROM": "+447700900001",
    }
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, cwd=ROOT, check=True
    ).stdout.strip()
    assert out == (
        "('sms', 'whatsapp', 'voice') "
        "{'BR': ('whatsapp', 'sms'), 'IN': ('whatsapp', 'voice')} 447700900001"
    )
