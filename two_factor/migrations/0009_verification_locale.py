# The voter's language, kept for the SMS and call of their verification (Verify's locale).
# Follows 0007; at the merge with the channel-rows branch it follows 0008_channel_rows.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("two_factor", "0008_channel_rows"),
    ]

    operations = [
        migrations.AddField(
            model_name="verification",
            name="locale",
            field=models.CharField(default="en", max_length=8),
        ),
    ]
