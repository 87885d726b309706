"""The status socket: only this session's own verification, the current status on
connect, and every change pushed as it commits."""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from pollstr.asgi import application
from tests.phone_numbers import NUMBER, give_phone
from tests.two_factor.verifications import client_session_key, create_verification
from two_factor import services
from two_factor.live import verification_publish
from two_factor.models import Status, Verification

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

ORIGIN = (b"origin", b"http://localhost")
CSRF_SECRET = "abcdefghijklmnopqrstuvwxyz012345"


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _headers(client: Client, origin: tuple[bytes, bytes] | None = ORIGIN) -> list:
    session = client.cookies["sessionid"].value
    headers = [
        (b"cookie", f"sessionid={session}; csrftoken=abcdefghijklmnopqrstuvwxyz012345".encode())
    ]
    if origin:
        headers.append(origin)
    headers.append((b"host", b"localhost"))
    return headers


def _verification_for(client: Client, user, status: str = Status.SENT) -> Verification:
    give_phone(user, NUMBER, verified=False)
    return create_verification(
        user=user,
        session_key=client_session_key(client),
        status=status,
        request_id="req-1",
        channel="sms",
    )


async def _connect(path: str, headers: list) -> tuple[WebsocketCommunicator, bool, object]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return communicator, connected, code


async def _watching_own_verification(
    make_user: Any,
) -> tuple[Client, Verification, WebsocketCommunicator]:
    """A signed-in browser on its own verification's page, past the socket's first frame."""
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)
    communicator, connected, _ = await _connect(f"/ws/2fa/{verification.pk}/", _headers(client))
    assert connected
    await communicator.receive_from(timeout=5)
    return client, verification, communicator


async def test_own_verification_is_accepted_and_gets_the_current_status(make_user):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)

    communicator, connected, _ = await _connect(f"/ws/2fa/{verification.pk}/", _headers(client))

    assert connected
    html = await communicator.receive_from(timeout=5)
    assert 'id="verification-status"' in html
    assert 'data-status="sent"' in html
    # Forms pushed over the socket carry a token for this browser's CSRF cookie.
    assert 'name="csrfmiddlewaretoken" value="' in html
    await communicator.disconnect()


async def test_a_committed_transition_is_pushed_to_the_open_page(make_user):
    _client, verification, communicator = await _watching_own_verification(make_user)

    await sync_to_async(services.transition)(
        verification, Status.SENT, reason="test", channel="voice", step=1
    )

    html = await communicator.receive_from(timeout=5)
    assert 'data-status="sent" data-channel="voice"' in html
    await communicator.disconnect()


@pytest.mark.parametrize("stranger", ["another user", "the same user in another session"])
async def test_a_browser_other_than_the_owning_session_is_refused(make_user, stranger):
    owner = await sync_to_async(make_user)("owner")
    owner_client = await sync_to_async(_browser)(owner)
    verification = await sync_to_async(_verification_for)(owner_client, owner)
    if stranger == "another user":
        owner = await sync_to_async(make_user)("intruder")
    other_client = await sync_to_async(_browser)(owner)

    _, connected, code = await _connect(f"/ws/2fa/{verification.pk}/", _headers(other_client))

    assert not connected
    assert code == 4403


async def test_anonymous_and_unknown_ids_are_refused_alike(make_user):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)

    _, anonymous, anonymous_code = await _connect(
        f"/ws/2fa/{verification.pk}/", [ORIGIN, (b"host", b"localhost")]
    )
    _, unknown, unknown_code = await _connect(
        "/ws/2fa/00000000-0000-0000-0000-000000000000/", _headers(client)
    )
    _, garbage, garbage_code = await _connect("/ws/2fa/not-a-uuid/", _headers(client))

    assert (anonymous, unknown, garbage) == (False, False, False)
    assert anonymous_code == unknown_code == garbage_code == 4403


async def test_a_foreign_origin_is_refused(make_user):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)

    _, connected, _ = await _connect(
        f"/ws/2fa/{verification.pk}/", _headers(client, origin=(b"origin", b"https://evil.example"))
    )
    _, no_origin, _ = await _connect(f"/ws/2fa/{verification.pk}/", _headers(client, origin=None))

    assert not connected
    assert not no_origin


async def test_garbage_frames_are_ignored_and_the_socket_stays_useful(make_user):
    _client, verification, communicator = await _watching_own_verification(make_user)

    for frame in [" ", "not json", json.dumps({"type": "verification.changed"}), "\x00" * 1000]:
        await communicator.send_to(text_data=frame)
    await communicator.send_to(bytes_data=b"\xff\xfe")
    assert await communicator.receive_nothing(timeout=0.3)

    await sync_to_async(services.transition)(verification, Status.CHECKING, reason="test")
    assert 'data-status="checking"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_reconnect_gets_the_state_it_missed(make_user):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)
    communicator, _, _ = await _connect(f"/ws/2fa/{verification.pk}/", _headers(client))
    await communicator.receive_from(timeout=5)
    await communicator.disconnect()

    await sync_to_async(services.transition)(verification, Status.CHECKING, reason="offline")
    await sync_to_async(services.verification_mark_verified)(verification=verification, reason="x")
    again, connected, _ = await _connect(f"/ws/2fa/{verification.pk}/", _headers(client))

    assert connected
    html = await again.receive_from(timeout=5)
    assert 'data-status="verified"' in html
    assert "continue-link" in html
    await again.disconnect()
    await asyncio.sleep(0)


async def test_logging_out_closes_the_status_socket_with_4401(make_user):
    client, _verification, communicator = await _watching_own_verification(make_user)

    await sync_to_async(client.post)("/accounts/logout/")

    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}


async def test_a_session_that_ended_without_a_logout_is_closed_at_the_next_recheck(
    make_user, settings
):
    settings.LIVE_SOCKET_RECHECK_SECONDS = 0.2
    client, _verification, communicator = await _watching_own_verification(make_user)

    # The session ends without a logout (expired, or deleted by an operator): no event.
    await sync_to_async(client.session.delete)()

    closed = await communicator.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4401}


def _page_url(verification: Verification) -> str:
    """The socket URL the code page renders (two_factor/verify.html)."""
    from two_factor.status import status_context

    context = status_context(Verification.objects.get(pk=verification.pk))
    return f"/ws/2fa/{verification.pk}/?shown={context['row_stamp']}&v={context['version']}"


async def test_a_page_that_shows_the_row_as_it_is_gets_no_first_frame_then_every_change(
    make_user,
):
    """The first frame would repeat what the page shows: skipped when the row is as
    the page rendered it; anything after is pushed."""
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)
    url = await sync_to_async(_page_url)(verification)

    communicator, connected, _ = await _connect(url, _headers(client))
    assert connected
    assert await communicator.receive_nothing(timeout=0.5)

    await sync_to_async(services.transition)(verification, Status.CHECKING, reason="test")
    assert 'data-status="checking"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


@pytest.mark.parametrize("change", ["a transition", "a queryset update", "a step's deadline"])
async def test_a_page_older_than_the_row_gets_the_current_state_first(make_user, change):
    from datetime import timedelta

    from django.utils import timezone

    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)
    url = await sync_to_async(_page_url)(verification)
    rows = Verification.objects.filter(pk=verification.pk)
    if change == "a transition":
        await sync_to_async(services.transition)(verification, Status.CHECKING, reason="test")
        expected = 'data-status="checking"'
    elif change == "a queryset update":
        await rows.aupdate(switching_to="voice")  # what a channel switch writes
        expected = 'data-status="sent"'
    else:
        # No write at all: the step's time is up, so the page would show the next one.
        await rows.aupdate(channel_deadline=timezone.now() - timedelta(seconds=1))
        url = await sync_to_async(_page_url)(verification)
        expected = 'data-channel="voice"'

    communicator, connected, _ = await _connect(url, _headers(client))

    assert connected
    assert expected in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_socket_url_with_garbage_for_the_page_state_gets_the_first_frame(make_user):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_verification_for)(client, user)

    path = f"/ws/2fa/{verification.pk}/?shown=yesterday&v=-3"
    communicator, connected, _ = await _connect(path, _headers(client))

    assert connected
    assert 'data-status="sent"' in await communicator.receive_from(timeout=5)
    await communicator.disconnect()


async def test_a_push_older_than_the_state_shown_is_dropped(make_user):
    """Pushes come from several processes (the web's "checking", a worker's "verified"):
    one rendered earlier may arrive later, and must not swap the older state back in."""
    from channels.layers import get_channel_layer

    from two_factor.live import verification_group

    _client, verification, communicator = await _watching_own_verification(make_user)
    await sync_to_async(services.transition)(verification, Status.CHECKING, reason="test")
    checking = await communicator.receive_from(timeout=5)
    await sync_to_async(services.transition)(verification, Status.VERIFIED, reason="test")
    verified = await communicator.receive_from(timeout=5)
    assert 'data-status="checking"' in checking
    assert 'data-status="verified"' in verified
    newest = (
        await Verification.objects.filter(pk=verification.pk)
        .values_list("events__pk", flat=True)
        .order_by("-events__pk")
        .afirst()
    )

    group = verification_group(verification.pk, "en")
    layer = get_channel_layer()
    late = {"type": "verification.changed", "html": "stale checking", "version": newest - 1}
    await layer.group_send(group, late)
    assert await communicator.receive_nothing(timeout=0.5)

    again = {"type": "verification.changed", "html": "verified again", "version": newest}
    await layer.group_send(group, again)
    assert await communicator.receive_from(timeout=5) == "verified again"
    await communicator.disconnect()


async def test_a_pushed_status_is_rendered_once_and_carries_this_browsers_token(make_user):
    from two_factor.live import CSRF_PLACEHOLDER, verification_render

    _client, verification, communicator = await _watching_own_verification(make_user)
    rendered = await sync_to_async(verification_render)(verification_id=verification.pk)
    assert rendered is not None
    shared = rendered.html
    assert CSRF_PLACEHOLDER in shared  # one render for every socket, no token in it

    await sync_to_async(verification_publish)(verification_id=verification.pk)

    html = await communicator.receive_from(timeout=5)
    assert html == shared.replace(CSRF_PLACEHOLDER, CSRF_SECRET)
    await communicator.disconnect()


async def test_pushes_and_the_close_never_wait_for_the_database_thread(make_user):
    """A push and a close touch no database, so they must not queue behind the process's
    one thread-sensitive thread, where every socket's database work waits (Channels'
    dispatch hops there before each message to close stale connections)."""
    from channels.layers import get_channel_layer

    from two_factor.live import verification_group

    _client, verification, communicator = await _watching_own_verification(make_user)
    release = threading.Event()
    busy = asyncio.ensure_future(sync_to_async(release.wait)())  # thread-sensitive
    try:
        await asyncio.sleep(0.05)  # the database thread is now taken
        push = {"type": "verification.changed", "html": "pushed", "version": 10**9}
        await get_channel_layer().group_send(verification_group(verification.pk, "en"), push)
        assert await communicator.receive_from(timeout=2) == "pushed"

        await communicator.disconnect(timeout=2)
        # It ended by itself, not cancelled at the timeout.
        assert communicator.future.done()
        assert not communicator.future.cancelled()
    finally:
        release.set()
        await busy
