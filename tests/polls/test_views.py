from __future__ import annotations

from datetime import timedelta

from django.urls import reverse

from polls.models import Vote


def test_index_lists_published_polls_newest_first(client, make_question):
    older = make_question(text="Older poll", published_ago=timedelta(days=2))
    newer = make_question(text="Newer poll", published_ago=timedelta(hours=1))
    make_question(text="Future poll", published_ago=timedelta(days=-1))

    response = client.get(reverse("polls:index"))

    assert response.status_code == 200
    assert list(response.context["questions"]) == [newer, older]
    assert "Future poll" not in response.content.decode()


def test_detail_shows_choices_to_a_verified_voter(voter_client, question):
    response = voter_client.get(reverse("polls:detail", args=[question.pk]))
    assert response.status_code == 200
    assert "polls/detail.html" in [t.name for t in response.templates]
    assert b"vim" in response.content
    assert b"emacs" in response.content


def test_detail_of_a_future_poll_is_not_found(voter_client, make_question):
    future = make_question(published_ago=timedelta(days=-1))
    assert voter_client.get(reverse("polls:detail", args=[future.pk])).status_code == 404


def test_a_poll_id_no_column_can_hold_is_not_found(voter_client, question):
    # The path's <int:…> takes any digits; the read must answer "no such poll", not 500.
    too_big = 2**63
    for name in ("polls:detail", "polls:results"):
        assert voter_client.get(reverse(name, args=[too_big])).status_code == 404
    response = voter_client.post(reverse("polls:vote", args=[too_big]), {"choice": "1"})
    assert response.status_code == 404
    assert not Vote.objects.exists()


def test_the_ballot_lists_the_choices_in_order_and_none_once_voted(voter_client, question, user):
    url = reverse("polls:detail", args=[question.pk])
    choices = list(question.choices.order_by("id"))
    assert list(voter_client.get(url).context["choices"]) == choices

    voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": choices[0].pk})

    response = voter_client.get(url)
    assert response.context["choices"] == []
    assert b'type="radio"' not in response.content


def test_detail_of_a_closed_poll_redirects_to_results(voter_client, make_question):
    closed = make_question(closes_in=timedelta(minutes=-1))
    response = voter_client.get(reverse("polls:detail", args=[closed.pk]))
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:results", args=[closed.pk])


def test_vote_is_counted_and_redirects_to_results(voter_client, question, user):
    vim = question.choices.get(text="vim")
    response = voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": vim.pk})
    assert response.status_code == 302
    assert response["Location"] == reverse("polls:results", args=[question.pk])
    assert Vote.objects.get(user=user).choice == vim


def test_vote_without_a_choice_shows_a_form_error(voter_client, question):
    response = voter_client.post(reverse("polls:vote", args=[question.pk]), {})
    assert response.status_code == 400
    assert b"Please pick one of the choices" in response.content
    assert not Vote.objects.exists()


def test_vote_for_another_polls_choice_is_refused(voter_client, question, make_question):
    other = make_question(text="Other")
    foreign = other.choices.first()
    response = voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": foreign.pk})
    assert response.status_code == 400
    assert not Vote.objects.exists()


def test_vote_with_garbage_choice_is_a_form_error_not_a_500(voter_client, question):
    for garbage in ("abc", "", "1e9", "-1", "99999999999999999999"):
        response = voter_client.post(reverse("polls:vote", args=[question.pk]), {"choice": garbage})
        assert response.status_code == 400, garbage


def test_second_vote_is_refused_with_the_results(voter_client, question, user):
    vim, emacs = question.choices.all()
    url = reverse("polls:vote", args=[question.pk])
    voter_client.post(url, {"choice": vim.pk})

    response = voter_client.post(url, {"choice": emacs.pk}, follow=True)

    assert response.redirect_chain[-1][0] == reverse("polls:results", args=[question.pk])
    assert b"already voted" in response.content
    assert Vote.objects.get(user=user).choice == vim


def test_vote_on_a_closed_poll_is_refused(voter_client, make_question):
    closed = make_question(closes_in=timedelta(minutes=-1))
    response = voter_client.post(
        reverse("polls:vote", args=[closed.pk]), {"choice": closed.choices.first().pk}, follow=True
    )
    assert b"This poll is closed" in response.content
    assert not Vote.objects.exists()


def test_vote_only_accepts_post(voter_client, question):
    assert voter_client.get(reverse("polls:vote", args=[question.pk])).status_code == 405


def test_vote_needs_a_csrf_token(user, question):
    from django.test import Client

    from tests.two_factor.verifications import mark_session_verified

    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    mark_session_verified(client, user)
    response = client.post(reverse("polls:vote", args=[question.pk]), {"choice": 1})
    assert response.status_code == 403


def test_results_show_counts_and_percentages(voter_client, question, make_user):
    vim = question.choices.get(text="vim")
    Vote.objects.create(user=make_user("bob"), question=question, choice=vim)
    response = voter_client.get(reverse("polls:results", args=[question.pk]))
    assert response.status_code == 200
    body = response.content.decode()
    assert "100%" in body
    assert "0%" in body
    assert response.context["total"] == 1


def test_anonymous_visitor_is_sent_to_login_from_a_poll(client, question):
    url = reverse("polls:detail", args=[question.pk])
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))
    assert "next=" in response["Location"]
