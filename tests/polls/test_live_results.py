from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from polls.services import vote_cast
from pollstr.asgi import application
from tests.two_factor.helpers import mark_session_verified

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _verified_headers(user) -> list:
    client = Client()
    client.force_login(user)
    mark_session_verified(client, user)
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
    ]


def _vote(user, question, choice_text: str) -> None:
    from django.db import transaction

    with transaction.atomic():
        vote_cast(user=user, question=question, choice_id=question.choices.get(text=choice_text).pk)


async def test_results_page_socket_gets_counts_now_and_after_each_vote(make_user, question):
    watcher = await sync_to_async(make_user)("watcher")
    voter = await sync_to_async(make_user)("voter")
    headers = await sync_to_async(_verified_headers)(watcher)
    communicator = WebsocketCommunicator(
        application, f"/ws/polls/{question.pk}/results/", headers=headers
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    first = await communicator.receive_from(timeout=5)
    assert 'id="results"' in first
    assert 'id="total-votes">0<' in first

    await sync_to_async(_vote)(voter, question, "vim")

    pushed = await communicator.receive_from(timeout=5)
    assert 'id="total-votes">1<' in pushed
    assert "100%" in pushed
    await communicator.disconnect()


async def test_results_socket_refuses_unverified_and_anonymous_sessions(make_user, question):
    user = await sync_to_async(make_user)()
    client = Client()
    await sync_to_async(client.force_login)(user)
    unverified = [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
    ]
    anonymous = [(b"origin", b"http://localhost"), (b"host", b"localhost")]

    for headers in (unverified, anonymous):
        communicator = WebsocketCommunicator(
            application, f"/ws/polls/{question.pk}/results/", headers=headers
        )
        connected, code = await communicator.connect(timeout=5)
        assert not connected
        assert code == 4403
