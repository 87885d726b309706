from __future__ import annotations

from django.contrib.auth import authenticate, get_user_model
from django.core.management import call_command

from polls.models import Choice, Question


def test_load_demo_creates_the_test_user_and_polls_once(db):
    call_command("load_demo", verbosity=0)
    counts = (get_user_model().objects.count(), Question.objects.count(), Choice.objects.count())
    call_command("load_demo", verbosity=0)

    assert counts[1] >= 3
    assert (
        get_user_model().objects.count(),
        Question.objects.count(),
        Choice.objects.count(),
    ) == counts
    assert authenticate(username="test", password="test1234") is not None
    assert all(q.choices.count() >= 2 for q in Question.objects.all())
