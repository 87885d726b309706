"""50 threads vote at once on the real PostgreSQL server (make test's DATABASE_URL)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from django.contrib.auth import get_user_model
from django.db import close_old_connections, connection
from django.test import Client
from django.urls import reverse

from polls.models import Vote
from tests.two_factor.verifications import mark_session_verified

THREADS = 50


@pytest.fixture
def postgres_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("the concurrency test needs PostgreSQL (make test runs it there)")


def _verified_clients(count: int, *, same_user: bool) -> list[Client]:
    users = get_user_model().objects
    shared = users.create_user("shared", password="x") if same_user else None
    clients = []
    for index in range(count):
        user = shared or users.create_user(f"voter{index}", password="x")
        client = Client()
        client.force_login(user)
        mark_session_verified(client, user, number=f"+3361{index:07d}" if not same_user else None)
        clients.append(client)
    return clients


def _vote_all_at_once(clients: list[Client], url: str, choice_ids: list[int]) -> list[int]:
    barrier = threading.Barrier(len(clients))
    statuses: list[int] = [0] * len(clients)

    def vote(index: int) -> None:
        try:
            barrier.wait()
            response = clients[index].post(url, {"choice": choice_ids[index % len(choice_ids)]})
            statuses[index] = response.status_code
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=vote, args=(i,)) for i in range(len(clients))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return statuses


def test_fifty_distinct_voters_at_once_are_all_counted_exactly(postgres_only, question):
    clients = _verified_clients(THREADS, same_user=False)
    choice_ids = list(question.choices.values_list("pk", flat=True))

    statuses = _vote_all_at_once(clients, reverse("polls:vote", args=[question.pk]), choice_ids)

    assert Counter(statuses) == {302: THREADS}
    counts = {choice.pk: choice.votes for choice in question.results()["choices"]}
    assert counts == {choice_ids[0]: THREADS // 2, choice_ids[1]: THREADS // 2}
    assert Vote.objects.filter(question=question).count() == THREADS


def test_one_voter_voting_fifty_times_at_once_keeps_exactly_one_vote(postgres_only, question):
    clients = _verified_clients(THREADS, same_user=True)
    choice_ids = list(question.choices.values_list("pk", flat=True))

    statuses = _vote_all_at_once(clients, reverse("polls:vote", args=[question.pk]), choice_ids)

    # Every request ends in a redirect to the results (one "thanks", the rest "already
    # voted"); none fails.
    assert Counter(statuses) == {302: THREADS}
    assert Vote.objects.filter(question=question).count() == 1
