"""A typed number no longer binds to an account until its code is verified: release the
claims earlier releases stored for numbers nobody verified, so they block no one."""

from django.db import migrations


def release_unverified_numbers(apps, schema_editor):
    PhoneNumber = apps.get_model("two_factor", "PhoneNumber")
    PhoneNumber.objects.filter(verified_at__isnull=True).delete()


class Migration(migrations.Migration):
    dependencies = [
        ("two_factor", "0004_verification_is_resend"),
    ]

    operations = [
        migrations.RunPython(release_unverified_numbers, migrations.RunPython.noop),
    ]
