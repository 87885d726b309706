"""Ordinary races a voter causes (a double click, two tabs) on the real PostgreSQL
server: never a 5xx, never two live verifications, never a check counted twice."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from datetime import timedelta

import pytest
from django.db import close_old_connections, connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from tests.two_factor.verifications import client_session_key
from two_factor.models import Status, Verification, VerificationEvent, session_key_hash

TABS = 10


@pytest.fixture
def postgres_only(transactional_db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("race tests need PostgreSQL's row locks (make test runs them there)")


def _tabs(client: Client, count: int) -> list[Client]:
    """`count` browser tabs sharing the client's cookies (one session)."""
    tabs = []
    for _ in range(count):
        tab = Client(raise_request_exception=False)
        tab.cookies = client.cookies
        tabs.append(tab)
    return tabs


def _all_at_once(tabs: list[Client], send: Callable[[Client], int]) -> Counter[int]:
    barrier = threading.Barrier(len(tabs))
    statuses: list[int] = [0] * len(tabs)

    def run(index: int) -> None:
        try:
            barrier.wait()
            statuses[index] = send(tabs[index])
        finally:
            close_old_connections()
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(tabs))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return Counter(statuses)


def _server_errors(statuses: Counter[int]) -> int:
    return sum(n for status, n in statuses.items() if status >= 500 or status == 0)


def test_parallel_starts_create_one_live_verification(
    postgres_only, two_factor_settings, logged_in_client, user, phone
):
    client_session_key(logged_in_client)

    statuses = _all_at_once(
        _tabs(logged_in_client, TABS), lambda tab: tab.post(reverse("two_factor:start")).status_code
    )

    assert _server_errors(statuses) == 0, statuses
    assert statuses[302] == 1  # the one that started; the rest were told to wait
    assert set(statuses) <= {302, 429}
    assert Verification.objects.filter(user=user).count() == 1
    assert Verification.objects.filter(user=user).live().count() == 1


def test_a_double_submitted_code_is_checked_once(
    postgres_only, two_factor_settings, logged_in_client, user, phone, make_verification
):
    sent = make_verification(
        Status.SENT,
        session_key=client_session_key(logged_in_client),
        request_id="req-1",
        channel="sms",
        sent_at=timezone.now(),
        channel_deadline=timezone.now() + timedelta(seconds=120),
    )
    url = reverse("two_factor:submit_code", args=[sent.pk])

    statuses = _all_at_once(
        _tabs(logged_in_client, TABS),
        lambda tab: tab.post(url, {"code": "123456"}, HTTP_HX_REQUEST="true").status_code,
    )

    assert _server_errors(statuses) == 0, statuses
    checks = VerificationEvent.objects.filter(verification=sent, to_status=Status.CHECKING)
    assert checks.count() == 1
    assert Verification.objects.get(pk=sent.pk).status == Status.CHECKING


def test_a_new_code_asked_for_during_a_check_is_refused_with_a_sentence(
    postgres_only, two_factor_settings, logged_in_client, user, phone, make_verification
):
    checking = make_verification(
        Status.CHECKING,
        session_key=client_session_key(logged_in_client),
        request_id="req-1",
        channel="sms",
        sent_at=timezone.now() - timedelta(seconds=60),
    )

    start = logged_in_client.post(reverse("two_factor:start"))
    resend = logged_in_client.post(reverse("two_factor:resend", args=[checking.pk]))

    assert start.status_code == 429
    assert b"checking the code you entered" in start.content
    assert resend.status_code == 302  # back to the code page, with the sentence
    assert Verification.objects.get(pk=checking.pk).status == Status.CHECKING
    assert Verification.objects.filter(user=user).count() == 1


def test_two_tabs_completing_at_once_consume_it_once_and_both_go_on(
    postgres_only, two_factor_settings, logged_in_client, user, phone, make_verification
):
    session = logged_in_client.session
    session["two_factor_next"] = "/polls/"
    session.save()
    verified = make_verification(
        Status.VERIFIED,
        session_key=session.session_key,
        request_id="req-1",
        verified_at=timezone.now(),
    )
    phone.verified_at = timezone.now()
    phone.save()
    url = reverse("two_factor:complete", args=[verified.pk])

    statuses = _all_at_once(
        _tabs(logged_in_client, 2),
        lambda tab: tab.get(url).status_code,
    )

    assert _server_errors(statuses) == 0, statuses
    assert statuses == Counter({302: 2})
    consumed = VerificationEvent.objects.filter(verification=verified, to_status=Status.CONSUMED)
    assert consumed.count() == 1
    # The rotated session is the verified one; the old key is gone.
    assert Verification.objects.get(pk=verified.pk).session_key_hash == session_key_hash(
        session.session_key
    )
