"""Fixtures of the verification-core tests; the users, clients, settings, eager tasks
and the verification factory every suite shares are in tests/conftest.py."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from tests.fakes.verify_server import fake_verify
from tests.two_factor.verifications import Capture, start_verification
from two_factor import gateways
from two_factor.models import PhoneNumber, Verification

__all__ = ["fake_verify"]


class FailingGateway:
    """A gateway whose every call raises `error`: the service is the subject here."""

    name = "failing"

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls: list[str] = []

    def start(
        self,
        *,
        number: str,
        client_ref: str,
        workflow: Sequence[gateways.WorkflowStep],
        locale: str | None = None,
    ) -> str:
        self.calls.append("start")
        raise self.error

    def check(self, *, request_id: str, code: str) -> None:
        self.calls.append("check")
        raise self.error

    def cancel(self, *, request_id: str) -> None:
        self.calls.append("cancel")

    def next_channel(self, *, request_id: str) -> None:
        self.calls.append("next_channel")
        raise self.error


@pytest.fixture
def failing_gateway(monkeypatch: pytest.MonkeyPatch) -> Callable[[Exception], FailingGateway]:
    """Install a gateway that answers every call with the given error."""

    def install(error: Exception) -> FailingGateway:
        gateway = FailingGateway(error)
        monkeypatch.setattr(gateways, "get_gateway", lambda: gateway)
        return gateway

    return install


@pytest.fixture
def sent(
    user: AbstractBaseUser,
    phone: PhoneNumber,
    client: Client,
    django_capture_on_commit_callbacks: Capture,
) -> Verification:
    """A verification for the client's session whose SMS the sandbox has sent."""
    return start_verification(client, user, django_capture_on_commit_callbacks)


@pytest.fixture
def three_step_workflow(settings: object) -> tuple[str, ...]:
    """Every channel of the table in a workflow: SMS, then WhatsApp, then a call."""
    workflow = ("sms", "whatsapp", "voice")
    settings.TWO_FACTOR_WORKFLOW = workflow  # type: ignore[attr-defined]
    return workflow
