"""The websocket gate (pollstr.routing.SocketGate), through the real application: origin,
route and session are checked once at the handshake, and the consumer is handed only what
it uses."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from pollstr.asgi import application
from tests.phone_numbers import NUMBER, give_phone
from tests.two_factor.verifications import (
    client_session_key,
    create_verification,
    mark_session_verified,
)
from two_factor.consumers import SessionBoundConsumer
from two_factor.models import Status

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

HOST = (b"host", b"localhost")
ORIGIN = (b"origin", b"http://localhost")
CSRF_COOKIE = "abcdefghijklmnopqrstuvwxyz012345"
# What a consumer's scope holds once it has connected: nothing of the handshake's.
CONSUMER_SCOPE = {
    "type",
    "path",
    "query_string",
    "scheme",
    "host",
    "url_route",
    "language",
    "csrf_token",
    "user_id",
    "session_key",
}


def _signed_in(user: Any, *, verified: bool = False) -> Client:
    client = Client()
    client.force_login(user)
    if verified:
        mark_session_verified(client, user)
    return client


def _status_path(client: Client, user: Any) -> str:
    give_phone(user, NUMBER, verified=False)
    verification = create_verification(
        user=user,
        session_key=client_session_key(client),
        status=Status.SENT,
        request_id="req-1",
        channel="sms",
    )
    return f"/ws/2fa/{verification.pk}/"


def _headers(client: Client | None, origin: bytes | None = b"http://localhost") -> list:
    headers = [HOST]
    if origin is not None:
        headers.append((b"origin", origin))
    if client is not None:
        cookie = f"sessionid={client.cookies['sessionid'].value}; csrftoken={CSRF_COOKIE}"
        headers.append((b"cookie", cookie.encode()))
    return headers


async def _connect(path: str, headers: list) -> tuple[bool, Any, WebsocketCommunicator]:
    communicator = WebsocketCommunicator(application, path, headers=headers)
    connected, code = await communicator.connect(timeout=5)
    return connected, code, communicator


@pytest.fixture
def accepted_scopes(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The scope of every consumer at the moment it accepts its socket."""
    scopes: list[dict[str, Any]] = []
    accept = SessionBoundConsumer.accept

    async def recording_accept(self: SessionBoundConsumer, *args: Any, **kwargs: Any) -> None:
        scopes.append(dict(self.scope))
        await accept(self, *args, **kwargs)

    monkeypatch.setattr(SessionBoundConsumer, "accept", recording_accept)
    return scopes


async def test_a_signed_in_page_s_socket_connects_holding_only_what_its_consumer_uses(
    make_user, accepted_scopes
):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_signed_in)(user)
    path = await sync_to_async(_status_path)(client, user)

    connected, _, communicator = await _connect(path + "?shown=1", _headers(client))

    assert connected
    assert 'data-status="sent"' in await communicator.receive_from(timeout=5)
    [scope] = accepted_scopes
    assert set(scope) == CONSUMER_SCOPE
    assert scope["user_id"] == user.pk
    assert scope["session_key"] == client.cookies["sessionid"].value
    assert scope["csrf_token"] == CSRF_COOKIE
    assert scope["query_string"] == b"shown=1"
    assert scope["url_route"]["kwargs"] == {"verification_id": path.split("/")[3]}
    await communicator.disconnect()


@pytest.mark.parametrize(
    "origin",
    [b"https://evil.example", b"http://localhost.evil.example", b"http://[::1", None],
    ids=["foreign", "lookalike", "unparseable", "missing"],
)
async def test_an_origin_not_of_allowed_hosts_is_refused_before_anything_else(make_user, origin):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_signed_in)(user)
    path = await sync_to_async(_status_path)(client, user)

    connected, code, _ = await _connect(path, _headers(client, origin=origin))
    unknown_path, unknown_code, _ = await _connect("/ws/nowhere/", _headers(client, origin=origin))

    # Closed before the accept without a code of ours (servers answer HTTP 403), even
    # where the path is unknown: the origin is checked first.
    assert (connected, code) == (False, 1000)
    assert (unknown_path, unknown_code) == (False, 1000)


@pytest.mark.parametrize(
    ("origin", "allowed"),
    [
        (b"http://localhost:8443", True),  # ALLOWED_HOSTS name hosts, not ports
        (b"https://app.example.com", True),  # ".example.com": the domain and subdomains
        (b"https://example.com", True),
        (b"https://example.org", False),
    ],
)
async def test_the_origin_is_held_to_allowed_hosts_as_channels_validator_does(
    make_user, settings, origin, allowed
):
    settings.ALLOWED_HOSTS = ["localhost", ".example.com"]
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_signed_in)(user)
    path = await sync_to_async(_status_path)(client, user)

    connected, _, communicator = await _connect(path, _headers(client, origin=origin))

    assert connected is allowed
    await communicator.disconnect()


@pytest.mark.parametrize("signed_in", [False, True], ids=["anonymous", "signed in"])
@pytest.mark.parametrize(
    "path", ["/ws/nowhere/", "/ws/2fa/", "/ws/polls/abc/results/", "/ws/polls/1/results/x/"]
)
async def test_an_unknown_path_is_closed_with_4404(make_user, path, signed_in):
    client = None
    if signed_in:
        client = await sync_to_async(_signed_in)(await sync_to_async(make_user)())

    connected, code, _ = await _connect(path, _headers(client))

    assert (connected, code) == (False, 4404)


async def test_an_anonymous_socket_is_refused_with_4403_on_every_page(question):
    status = "/ws/2fa/00000000-0000-0000-0000-000000000000/"
    results = f"/ws/polls/{question.pk}/results/"

    for path in (status, results):
        connected, code, _ = await _connect(path, _headers(None))
        assert (connected, code) == (False, 4403), path


@pytest.mark.parametrize(
    "change", ["password changed", "user deactivated", "session deleted", "session of another"]
)
async def test_a_session_that_no_longer_authenticates_its_user_is_refused(make_user, change):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_signed_in)(user)
    path = await sync_to_async(_status_path)(client, user)

    def make_the_change() -> None:
        if change == "password changed":
            # The stored session's auth hash no longer matches (django.contrib.auth's check).
            user.set_password("a-new-password-1234")
            user.save()
        elif change == "user deactivated":
            user.is_active = False
            user.save()
        elif change == "session deleted":
            client.session.delete()
        else:
            # The session cookie now names a session of another user.
            other = _signed_in(make_user("other"))
            client.cookies["sessionid"] = other.cookies["sessionid"].value

    await sync_to_async(make_the_change)()
    connected, code, _ = await _connect(path, _headers(client))

    assert (connected, code) == (False, 4403)
