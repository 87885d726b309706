from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from polls.services import vote_cast
from pollstr.asgi import application
from tests.conftest import PASSWORD
from tests.two_factor.verifications import mark_session_verified
from two_factor.session import SESSION_KEY as VERIFIED_FLAG

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]


def _verified_browser(user) -> Client:
    client = Client()
    client.force_login(user)
    mark_session_verified(client, user)
    return client


def _headers(client: Client) -> list:
    return [
        (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode()),
        (b"origin", b"http://localhost"),
        (b"host", b"localhost"),
    ]


def _verified_headers(user) -> list:
    return _headers(_verified_browser(user))


def _vote(user, question, choice_text: str) -> None:
    from django.db import transaction

    from tests.phone_numbers import give_phone, unique_number

    give_phone(user, unique_number(user))  # only a verified phone votes
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


# --- the socket lives only as long as its session's right to it -----------------------------


async def _watching(client: Client, question) -> WebsocketCommunicator:
    communicator = WebsocketCommunicator(
        application, f"/ws/polls/{question.pk}/results/", headers=_headers(client)
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    assert 'id="results"' in await communicator.receive_from(timeout=5)
    return communicator


async def _closed_with(communicator: WebsocketCommunicator) -> int | None:
    """The code of the close frame the socket gets next (no data frame may come first)."""
    message = await communicator.receive_output(timeout=5)
    assert message["type"] == "websocket.close", message
    return message.get("code")


async def test_logging_out_closes_the_results_socket_with_4401(make_user, question):
    watcher = await sync_to_async(make_user)("watcher")
    browser = await sync_to_async(_verified_browser)(watcher)
    communicator = await _watching(browser, question)

    response = await sync_to_async(browser.post)("/accounts/logout/")

    assert response.status_code == 302
    assert await _closed_with(communicator) == 4401


async def test_a_logout_in_another_session_leaves_this_socket_streaming(make_user, question):
    watcher = await sync_to_async(make_user)("watcher")
    voter = await sync_to_async(make_user)("voter")
    here = await sync_to_async(_verified_browser)(watcher)
    elsewhere = await sync_to_async(_verified_browser)(watcher)
    communicator = await _watching(here, question)

    await sync_to_async(elsewhere.post)("/accounts/logout/")
    await sync_to_async(_vote)(voter, question, "vim")

    assert 'id="total-votes">1<' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_password_change_in_another_session_closes_the_socket_with_4401(
    make_user, question
):
    watcher = await sync_to_async(make_user)("watcher")
    here = await sync_to_async(_verified_browser)(watcher)
    elsewhere = await sync_to_async(_verified_browser)(watcher)
    communicator = await _watching(here, question)
    new_password = "a-brand-new-staple-9371"

    response = await sync_to_async(elsewhere.post)(
        "/accounts/password/",
        {"old_password": PASSWORD, "new_password1": new_password, "new_password2": new_password},
    )

    assert response.status_code == 302
    assert await _closed_with(communicator) == 4401


async def test_a_verified_flag_ended_quietly_closes_the_socket_at_the_next_recheck(
    make_user, question, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    watcher = await sync_to_async(make_user)("watcher")
    browser = await sync_to_async(_verified_browser)(watcher)
    communicator = await _watching(browser, question)

    def end_the_flag_quietly() -> None:
        # No logout, no signal: only the stored session changes (an operator, a script).
        session = browser.session
        session.pop(VERIFIED_FLAG)
        session.save()

    await sync_to_async(end_the_flag_quietly)()

    assert await _closed_with(communicator) == 4403


async def test_a_verified_flag_past_its_age_gets_no_push(make_user, question, settings):
    import asyncio
    import time

    watcher = await sync_to_async(make_user)("watcher")
    voter = await sync_to_async(make_user)("voter")
    browser = await sync_to_async(_verified_browser)(watcher)
    settings.TWO_FACTOR_VERIFIED_MAX_AGE = 2

    def age_the_flag() -> None:
        session = browser.session
        session[VERIFIED_FLAG] = {**session[VERIFIED_FLAG], "at": time.time() - 1.5}
        session.save()

    await sync_to_async(age_the_flag)()
    communicator = await _watching(browser, question)  # still fresh for half a second
    # The flag's end is known since connect: the push checks the clock, not the database.
    await asyncio.sleep(0.7)

    await sync_to_async(_vote)(voter, question, "vim")

    assert await _closed_with(communicator) == 4403


async def test_watchers_relay_the_fragment_the_publisher_rendered_once(make_user, question):
    from channels.layers import get_channel_layer

    from polls.live import results_group, results_message
    from pollstr.fanout import relay

    watchers = []
    for name in ("w1", "w2", "w3"):
        user = await sync_to_async(make_user)(name)
        watchers.append(await _watching(await sync_to_async(_verified_browser)(user), question))

    layer = get_channel_layer()
    group = results_group(question.pk)
    # One membership in the layer for the process, whatever the number of its sockets.
    assert len(layer.groups[group]) == 1
    assert relay().listeners(group) == 3
    await layer.group_send(group, results_message(question_id=question.pk, html="<p>once</p>"))

    for communicator in watchers:
        assert await communicator.receive_from(timeout=5) == "<p>once</p>"

    # The last socket to leave takes the process out of the group.
    for communicator in watchers:
        await communicator.disconnect()
    assert relay().listeners(group) == 0
    assert group not in layer.groups or not layer.groups[group]
