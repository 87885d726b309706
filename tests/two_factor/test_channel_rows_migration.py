"""two_factor 0008_channel_rows: `calling` becomes `sent` on the voice step, the history
of every verification is carried over, and the migration goes back as it came."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

BEFORE = [("two_factor", "0007_trusted_device")]
AFTER = [("two_factor", "0008_channel_rows")]

pytestmark = pytest.mark.django_db(transaction=True)


def _migrate(targets: list[tuple[str, str]]) -> Any:
    executor = MigrationExecutor(connection)
    executor.migrate(targets)
    return MigrationExecutor(connection).loader.project_state(targets).apps


@pytest.fixture
def old_schema() -> Iterator[Any]:
    apps = _migrate(BEFORE)
    try:
        yield apps
    finally:
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _history(apps: Any, verification_id: Any) -> list[tuple[str, str, str]]:
    Event = apps.get_model("two_factor", "VerificationEvent")
    fields = ["from_status", "to_status"]
    if any(f.name == "channel" for f in Event._meta.get_fields()):
        fields.append("channel")
    rows = Event.objects.filter(verification_id=verification_id).order_by("created_at", "id")
    return [tuple(row) for row in rows.values_list(*fields)]


def _old_verification(apps: Any, username: str, status: str, channel: str, trail: list[str]) -> Any:
    User = apps.get_model("auth", "User")
    Verification = apps.get_model("two_factor", "Verification")
    Event = apps.get_model("two_factor", "VerificationEvent")
    user = User.objects.create(username=username)
    verification = Verification.objects.create(
        user=user, session_key_hash="h", number="+447911123456", status=status, channel=channel
    )
    at = timezone.now()
    previous = ""
    for index, to_status in enumerate(trail):
        Event.objects.create(
            verification=verification,
            from_status=previous,
            to_status=to_status,
            created_at=at + timedelta(seconds=index),
        )
        previous = to_status
    return verification


def test_calling_rows_become_sent_on_the_voice_step_with_their_history_and_come_back(
    old_schema: Any,
) -> None:
    trail = ["queued", "sending", "sent", "calling", "checking", "calling"]
    calling = _old_verification(old_schema, "calling", "calling", "voice", trail)
    texted = _old_verification(old_schema, "texted", "sent", "sms", ["queued", "sending", "sent"])
    ended = ["queued", "sending", "sent", "calling", "expired"]
    expired = _old_verification(old_schema, "expired", "expired", "voice", ended)

    apps = _migrate(AFTER)
    Verification = apps.get_model("two_factor", "Verification")

    moved = {
        v.pk: (v.status, v.channel, v.step, v.workflow)
        for v in Verification.objects.filter(pk__in=[calling.pk, texted.pk, expired.pk])
    }
    assert moved == {
        calling.pk: ("sent", "voice", 1, ["sms", "voice"]),
        texted.pk: ("sent", "sms", 0, ["sms", "voice"]),
        expired.pk: ("expired", "voice", 1, ["sms", "voice"]),
    }
    assert _history(apps, calling.pk) == [
        ("", "queued", ""),
        ("queued", "sending", ""),
        ("sending", "sent", "sms"),
        ("sent", "sent", "voice"),
        ("sent", "checking", ""),
        ("checking", "sent", "voice"),
    ]
    assert _history(apps, expired.pk)[-1] == ("sent", "expired", "")

    apps = _migrate(BEFORE)
    Verification = apps.get_model("two_factor", "Verification")

    assert Verification.objects.get(pk=calling.pk).status == "calling"
    assert Verification.objects.get(pk=texted.pk).status == "sent"
    assert _history(apps, calling.pk) == [
        ("", "queued"),
        ("queued", "sending"),
        ("sending", "sent"),
        ("sent", "calling"),
        ("calling", "checking"),
        ("checking", "calling"),
    ]
    assert _history(apps, expired.pk)[-2:] == [("sent", "calling"), ("calling", "expired")]
