"""The SMS budget: each verification records where its code went (region and mobile
prefix, for the conversion governor), and the governor's pauses get their table.

Rows sent in the last 7 days (the longest governor window) are filled in from their
number; older ones are never judged again and stay blank."""

from datetime import timedelta

import django.db.models.deletion
import django.utils.timezone
import phonenumbers
from django.conf import settings
from django.db import migrations, models


def fill_destinations(apps, schema_editor):
    Verification = apps.get_model("two_factor", "Verification")
    digits = settings.TWO_FACTOR_GOVERNOR["prefix_digits"]
    recent = Verification.objects.filter(
        sent_at__gte=django.utils.timezone.now() - timedelta(days=7)
    ).only("pk", "number")
    batch = []
    for verification in recent.iterator(chunk_size=1000):
        number = verification.number
        region = phonenumbers.region_code_for_number(number) or "ZZ"
        national = phonenumbers.national_significant_number(number)
        verification.country = region if len(region) == 2 and region.isalpha() else "ZZ"
        verification.prefix = f"+{number.country_code}{national[:digits]}"
        batch.append(verification)
        if len(batch) >= 1000:
            Verification.objects.bulk_update(batch, ["country", "prefix"])
            batch = []
    Verification.objects.bulk_update(batch, ["country", "prefix"])


class Migration(migrations.Migration):
    dependencies = [
        ("two_factor", "0005_release_unverified_numbers"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="SendPause",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("country", models.CharField(max_length=2)),
                ("prefix", models.CharField(blank=True, max_length=16)),
                ("started_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("until", models.DateTimeField()),
                ("sent", models.PositiveIntegerField()),
                ("verified", models.PositiveIntegerField()),
                ("reason", models.TextField()),
                ("lifted_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "ordering": ["-started_at"],
            },
        ),
        migrations.AddField(
            model_name="verification",
            name="country",
            field=models.CharField(blank=True, max_length=2),
        ),
        migrations.AddField(
            model_name="verification",
            name="prefix",
            field=models.CharField(blank=True, max_length=16),
        ),
        migrations.AddIndex(
            model_name="verification",
            index=models.Index(
                condition=models.Q(("sent_at__isnull", False)),
                fields=["country", "sent_at"],
                name="verification_sent_to",
            ),
        ),
        migrations.AddField(
            model_name="sendpause",
            name="lifted_by",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to=settings.AUTH_USER_MODEL,
            ),
        ),
        migrations.AddIndex(
            model_name="sendpause",
            index=models.Index(fields=["until"], name="send_pause_until"),
        ),
        migrations.RunPython(fill_destinations, migrations.RunPython.noop),
    ]
