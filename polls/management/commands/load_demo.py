"""Create the demo user and polls; safe to run any number of times."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction
from django.utils import timezone

from polls.models import Question

DEMO_USERNAME = "test"
DEMO_PASSWORD = "test1234"  # noqa: S105 - the documented demo account
DEMO_POLLS = [
    (
        "What's your favourite way to get a one-time code?",
        ["SMS", "Voice call", "Authenticator app"],
    ),
    ("Which Python web framework do you reach for first?", ["Django", "Flask", "FastAPI", "Other"]),
    ("Tabs or spaces?", ["Tabs", "Spaces", "Whatever the formatter says"]),
    ("How do you take your coffee?", ["Black", "With milk", "I don't drink coffee"]),
]


class Command(BaseCommand):
    help = "Create the demo user (test / test1234) and a few polls. Idempotent."

    @transaction.atomic
    def handle(self, *args: Any, **options: Any) -> None:
        user_model = get_user_model()
        user, created = user_model.objects.get_or_create(username=DEMO_USERNAME)
        if created or not user.check_password(DEMO_PASSWORD):
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        self.stdout.write(f"user {DEMO_USERNAME!r} {'created' if created else 'present'}")

        now = timezone.now()
        for age, (text, choices) in enumerate(DEMO_POLLS):
            question, created = Question.objects.get_or_create(
                text=text, defaults={"pub_date": now - timedelta(hours=age + 1)}
            )
            for choice_text in choices:
                question.choices.get_or_create(text=choice_text)
            self.stdout.write(f"poll {text!r} {'created' if created else 'present'}")
