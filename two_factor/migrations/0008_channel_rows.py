"""Channels become rows (two_factor/channels.py): `calling` goes, `sent` says a code is
out and the row says on which channel.

Every existing verification ran the fixed workflow sms, voice, so it gets that workflow;
a `calling` one becomes `sent` on step 1 (voice). The audit trail keeps its history:
events gain the channel they moved to, an old `sent` was an SMS step and an old
`calling` becomes `sent` on voice (and `from_status` likewise). Reversible: a voice step
is `calling` again; a step on a channel the old code did not know (WhatsApp) goes back
as `sent`, which the old code shows as the SMS step.
"""

from django.db import migrations, models

OLD_WORKFLOW = ["sms", "voice"]
STATUSES = [
    ("queued", "Queued"),
    ("sending", "Sending"),
    ("sent", "Code sent"),
    ("checking", "Checking code"),
    ("verified", "Verified"),
    ("consumed", "Completed"),
    ("failed", "Failed"),
    ("expired", "Expired"),
    ("cancelled", "Cancelled"),
]
LIVE = ["checking", "queued", "sending", "sent"]


def _checked_now(schema_editor):
    """PostgreSQL refuses ALTER TABLE on a table with pending (deferred) foreign-key
    checks, and this migration alters the table after updating its rows: check them as
    the rows change instead."""
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")


def _deferred_again(schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("SET CONSTRAINTS ALL DEFERRED")


def forwards(apps, schema_editor):
    _checked_now(schema_editor)
    Verification = apps.get_model("two_factor", "Verification")
    VerificationEvent = apps.get_model("two_factor", "VerificationEvent")
    Verification.objects.update(workflow=OLD_WORKFLOW)
    Verification.objects.filter(status="calling").update(status="sent", channel="voice")
    Verification.objects.filter(channel="voice").update(step=1)
    # An old `sent` was always the SMS step (a voice step was `calling`).
    VerificationEvent.objects.filter(to_status="sent").update(channel="sms")
    VerificationEvent.objects.filter(to_status="calling").update(to_status="sent", channel="voice")
    VerificationEvent.objects.filter(from_status="calling").update(from_status="sent")
    _deferred_again(schema_editor)


def backwards(apps, schema_editor):
    _checked_now(schema_editor)
    Verification = apps.get_model("two_factor", "Verification")
    VerificationEvent = apps.get_model("two_factor", "VerificationEvent")
    Verification.objects.filter(status="sent", channel="voice").update(status="calling")
    # from_status follows the event before it: restore it from that event's channel.
    previous: dict[object, str] = {}
    events = VerificationEvent.objects.order_by("verification_id", "created_at", "id")
    for event in events.iterator():
        was = previous.get(event.verification_id, "")
        if event.from_status == "sent" and was == "calling":
            VerificationEvent.objects.filter(pk=event.pk).update(from_status="calling")
        now = "calling" if (event.to_status == "sent" and event.channel == "voice") else ""
        previous[event.verification_id] = now or event.to_status
    VerificationEvent.objects.filter(to_status="sent", channel="voice").update(to_status="calling")
    _deferred_again(schema_editor)


class Migration(migrations.Migration):
    dependencies = [
        ("two_factor", "0007_trusted_device"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="verification", name="verification_status_known"),
        migrations.RemoveConstraint(
            model_name="verification", name="one_live_verification_per_user"
        ),
        migrations.AddField(
            model_name="verification",
            name="workflow",
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name="verification",
            name="step",
            field=models.PositiveSmallIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="verification",
            name="switching_to",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddField(
            model_name="verification",
            name="check_url",
            field=models.TextField(blank=True),
        ),
        migrations.AddField(
            model_name="verificationevent",
            name="channel",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.RunPython(forwards, backwards),
        migrations.AlterField(
            model_name="verification",
            name="status",
            field=models.CharField(choices=STATUSES, default="queued", max_length=16),
        ),
        migrations.AddConstraint(
            model_name="verification",
            constraint=models.CheckConstraint(
                condition=models.Q(status__in=[value for value, _ in STATUSES]),
                name="verification_status_known",
            ),
        ),
        migrations.AddConstraint(
            model_name="verification",
            constraint=models.UniqueConstraint(
                condition=models.Q(status__in=LIVE),
                fields=("user",),
                name="one_live_verification_per_user",
            ),
        ),
    ]
