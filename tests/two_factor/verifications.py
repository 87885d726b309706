"""Building verifications and driving them as a voter would: the one factory for a
`Verification` row, starting one for a test client's session, reading the code the
sandbox sent and submitting a code."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.test import Client

from tests.phone_numbers import NUMBER, give_phone, unique_number
from two_factor import services
from two_factor.channels import workflow_steps
from two_factor.gateways.base import WorkflowStep
from two_factor.models import Status, Verification, VerificationEvent, session_key_hash
from two_factor.session import session_verify

Capture = Callable[..., Any]  # pytest-django's django_capture_on_commit_callbacks


def create_verification(
    *,
    user: AbstractBaseUser,
    status: str = Status.QUEUED,
    session_key: str = "session-key",
    number: str = NUMBER,
    reason: str = "made by a test",
    **fields: Any,
) -> Verification:
    """A Verification row in any status with its creation event, as if it had got there
    (no tasks run, nothing sent). `fields` are any other model fields; the workflow is
    the configured one unless given, and a row with a `channel` is on that step of it."""
    fields.setdefault("workflow", list(settings.TWO_FACTOR_WORKFLOW))
    if fields.get("channel") in fields["workflow"]:
        fields.setdefault("step", fields["workflow"].index(fields["channel"]))
    verification = Verification.objects.create(
        user=user,
        session_key_hash=session_key_hash(session_key),
        number=number,
        status=status,
        **fields,
    )
    VerificationEvent.objects.create(
        verification=verification,
        to_status=status,
        channel=verification.channel,
        reason=reason,
    )
    return verification


def default_workflow() -> list[WorkflowStep]:
    """The configured workflow as a gateway is handed it (two_factor/channels.py)."""
    return workflow_steps(settings.TWO_FACTOR_WORKFLOW)


def client_session_key(client: Client) -> str:
    # The test client creates and saves a session (and its cookie) on first access.
    return client.session.session_key


def start_verification(client: Client, user: AbstractBaseUser, capture: Capture) -> Verification:
    """Start a verification for the client's session and run its send task."""
    with capture(execute=True):
        verification = services.verification_start(
            user=user, session_key=client_session_key(client), ip="127.0.0.1"
        )
    verification.refresh_from_db()
    return verification


def submit_code(
    verification: Verification, code: str, capture: Capture, *, ip: str | None = "192.0.2.1"
) -> Verification:
    """Submit `code` and run the check task; the row as it is afterwards."""
    with capture(execute=True):
        services.verification_submit_code(verification=verification, code=code, ip=ip)
    verification.refresh_from_db()
    return verification


def latest_code(number: str = NUMBER) -> str:
    """The newest code the sandbox sent to `number`."""
    from two_factor.gateways.sandbox import sandbox_messages_for

    messages = sandbox_messages_for(number)
    assert messages, f"the sandbox sent nothing to {number}"
    return messages[0]["code"]


def wrong_code_for(code: str) -> str:
    """A code of the right shape that differs from `code` in every digit."""
    return "".join(str((int(digit) + 1) % 10) for digit in code)


def mark_session_verified(
    client: Client, user: AbstractBaseUser, number: str | None = None
) -> None:
    """Give the client's session the verified flag, as the completion view would: a new
    session key (the client's cookie follows it), then the flag."""
    phone = give_phone(user, number or unique_number(user))
    session = client.session
    session_verify(session=session, user=user, number=phone.number)
    session.save()
    client.cookies[settings.SESSION_COOKIE_NAME] = session.session_key
