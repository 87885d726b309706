from __future__ import annotations

from django.contrib.auth import get_user_model
from django.urls import reverse

from polls.models import Vote


def test_admin_question_pages_load_with_vote_counts(client, question, make_user):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    Vote.objects.create(user=make_user("v"), question=question, choice=question.choices.first())
    client.force_login(admin)

    listing = client.get(reverse("admin:polls_question_changelist"))
    change = client.get(reverse("admin:polls_question_change", args=[question.pk]))

    assert listing.status_code == 200
    assert change.status_code == 200
    assert listing.context["cl"].result_list[0]._votes == 1
    assert b"vim" in change.content


def test_admin_can_add_a_question_with_inline_choices(client, db):
    admin = get_user_model().objects.create_superuser("root", "root@example.com", "pw-123456!")
    client.force_login(admin)
    response = client.post(
        reverse("admin:polls_question_add"),
        {
            "text": "New?",
            "pub_date_0": "2026-01-01",
            "pub_date_1": "10:00:00",
            "choices-TOTAL_FORMS": "2",
            "choices-INITIAL_FORMS": "0",
            "choices-0-text": "Yes",
            "choices-1-text": "No",
        },
    )
    assert response.status_code == 302
    from polls.models import Question

    assert list(Question.objects.get(text="New?").choices.values_list("text", flat=True)) == [
        "Yes",
        "No",
    ]
