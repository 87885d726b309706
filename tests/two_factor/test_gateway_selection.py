"""Choosing the gateway: settings resolve TWO_FACTOR_GATEWAY (an alias or a dotted
class path) once into TWO_FACTOR_GATEWAY_CLASS; get_gateway() builds that class."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured

from two_factor.gateways import get_gateway
from two_factor.gateways.sandbox import SandboxGateway

ROOT = Path(__file__).resolve().parents[2]
SANDBOX = "two_factor.gateways.sandbox.SandboxGateway"
VONAGE = "two_factor.gateways.vonage.client.VonageGateway"
CUSTOM = f"{__name__}.CustomGateway"


class CustomGateway(SandboxGateway):
    """A gateway of the operator's own, chosen by its dotted path."""

    name = "custom"


def resolve(value: str) -> subprocess.CompletedProcess[str]:
    """Load the settings in a fresh interpreter with TWO_FACTOR_GATEWAY=value."""
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    code = (
        "from pollstr import settings as s; print(s.TWO_FACTOR_GATEWAY, s.TWO_FACTOR_GATEWAY_CLASS)"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, "SECRET_KEY": "x", "TWO_FACTOR_GATEWAY": value},
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("value", "name", "path"),
    [
        ("sandbox", "sandbox", SANDBOX),
        ("Vonage", "vonage", VONAGE),  # env files' names, case as before
        (SANDBOX, "sandbox", SANDBOX),  # a known class keeps its short name
        (VONAGE, "vonage", VONAGE),
        (CUSTOM, CUSTOM, CUSTOM),
    ],
)
def test_settings_resolve_an_alias_or_a_dotted_path_to_a_class_path(
    value: str, name: str, path: str
) -> None:
    result = resolve(value)

    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [name, path]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("twilio", "TWO_FACTOR_GATEWAY must be sandbox, vonage or the dotted path"),
        ("two_factor.gateways.Sandbox Gateway", "TWO_FACTOR_GATEWAY must be"),
        ("two_factor.carrier_pigeon.Gateway", "no module 'two_factor.carrier_pigeon'"),
        ("nowhere.at_all.Gateway", "no module 'nowhere.at_all'"),
    ],
)
def test_settings_refuse_a_gateway_that_is_neither_at_start_up(value: str, message: str) -> None:
    result = resolve(value)

    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert message in result.stderr


def test_get_gateway_builds_the_configured_class_from_its_settings(settings: Any) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = SANDBOX
    settings.TWO_FACTOR_CODE_LENGTH = 8
    settings.TWO_FACTOR_CHANNEL_TIMEOUT = 45
    settings.TWO_FACTOR_MAX_WRONG_CODES = 5

    gateway = get_gateway()

    assert type(gateway) is SandboxGateway
    assert (gateway.config.code_length, gateway.config.channel_timeout) == (8, 45)
    assert gateway.emulator.max_wrong_codes == 5


def test_get_gateway_builds_a_class_given_by_its_dotted_path(settings: Any) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = CUSTOM

    assert type(get_gateway()) is CustomGateway


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("two_factor.gateways.sandbox.NoSuchGateway", "not an importable class"),
        ("collections.OrderedDict", "has no from_settings()"),
    ],
)
def test_get_gateway_refuses_a_class_path_that_is_not_a_gateway(
    settings: Any, path: str, message: str
) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = path

    with pytest.raises(ImproperlyConfigured, match=message):
        get_gateway()


def test_a_brand_the_provider_would_refuse_is_improperly_configured(settings: Any) -> None:
    settings.TWO_FACTOR_GATEWAY_CLASS = SANDBOX
    settings.TWO_FACTOR_BRAND = "Poll$tr"

    with pytest.raises(ImproperlyConfigured, match="TWO_FACTOR_BRAND"):
        get_gateway()
