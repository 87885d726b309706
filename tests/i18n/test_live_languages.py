"""Live fragments in each watcher's language: a socket joins its page's group in the
language its handshake speaks, and a change is rendered once per language whose pages
are open (not once per socket, and not for languages nobody reads)."""

from __future__ import annotations

import os
import uuid

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from polls import live as polls_live
from polls.live import results_group, results_publish
from pollstr.asgi import application
from pollstr.channel_layers import groups_present
from tests.phone_numbers import NUMBER, give_phone
from tests.two_factor.verifications import (
    client_session_key,
    create_verification,
    mark_session_verified,
)
from two_factor import live
from two_factor.live import verification_group, verification_publish
from two_factor.models import Status, Verification


def _listen(group: str) -> str:
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    return channel


def _received(channel: str) -> dict:
    return async_to_sync(get_channel_layer().receive)(channel)


@pytest.mark.django_db
def test_a_change_is_rendered_once_per_language_present(monkeypatch, user) -> None:
    verification = create_verification(user=user, status=Status.SENT, channel="sms")
    rendered: list[str | None] = []
    real_render = live.render_fragment

    def counting(verification, **kwargs):
        rendered.append(kwargs.get("language"))
        return real_render(verification, **kwargs)

    monkeypatch.setattr(live, "render_fragment", counting)
    french = [_listen(verification_group(verification.pk, "fr")) for _ in range(3)]
    english = _listen(verification_group(verification.pk, "en"))

    verification_publish(verification_id=verification.pk)

    # Three French sockets and one English one: two renders, none in Spanish.
    assert sorted(rendered) == ["en", "fr"]
    for channel in french:
        assert "Nous avons envoyé un code par SMS" in _received(channel)["html"]
    assert "We sent a code by SMS" in _received(english)["html"]


@pytest.mark.django_db
def test_results_are_rendered_once_per_language_present(monkeypatch, question) -> None:
    rendered: list[str | None] = []
    real_render = polls_live.results_render

    def counting(**kwargs):
        rendered.append(kwargs.get("language"))
        return real_render(**kwargs)

    monkeypatch.setattr(polls_live, "results_render", counting)
    spanish = _listen(results_group(question.pk, "es"))

    results_publish(question_id=question.pk)

    assert rendered == ["es"]
    message = _received(spanish)
    assert message["group"] == results_group(question.pk, "es")
    assert 'Total: <span id="total-votes">0</span> votos' in message["html"]


@pytest.mark.redis
def test_the_redis_layer_tells_which_languages_are_present(settings) -> None:
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": f"pollstr-test-lang-{uuid.uuid4().hex}"},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()
    try:
        base = f"page-{uuid.uuid4().hex}"
        groups = [f"{base}.en", f"{base}.fr", f"{base}.es"]
        assert groups_present(groups) == []
        _listen(f"{base}.fr")
        _listen(f"{base}.fr")
        _listen(f"{base}.es")

        assert groups_present(groups) == [f"{base}.fr", f"{base}.es"]
    finally:
        channel_layers.backends.clear()


# --- sockets ---------------------------------------------------------------------------------

ORIGIN = (b"origin", b"http://localhost")


def _browser(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _headers(client: Client, *, cookie: str = "", accept: str = "") -> list:
    session = client.cookies["sessionid"].value
    headers = [(b"cookie", f"sessionid={session}; csrftoken=x{cookie}".encode()), ORIGIN]
    headers.append((b"host", b"localhost"))
    if accept:
        headers.append((b"accept-language", accept.encode()))
    return headers


def _own_verification(client: Client, user) -> Verification:
    give_phone(user, NUMBER, verified=False)
    return create_verification(
        user=user,
        session_key=client_session_key(client),
        status=Status.SENT,
        request_id="req-1",
        channel="sms",
    )


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
@pytest.mark.parametrize(
    ("cookie", "accept", "sentence"),
    [
        ("", "fr-FR,fr;q=0.9", "Nous avons envoyé un code par SMS"),
        ("; django_language=es", "fr", "Te hemos enviado un código por SMS"),  # the switch wins
        ("", "", "We sent a code by SMS"),
    ],
)
async def test_a_status_socket_speaks_its_pages_language(make_user, cookie, accept, sentence):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    verification = await sync_to_async(_own_verification)(client, user)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/2fa/{verification.pk}/",
        headers=_headers(client, cookie=cookie, accept=accept),
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected

    first = await communicator.receive_from(timeout=5)
    await sync_to_async(verification_publish)(verification_id=verification.pk)
    pushed = await communicator.receive_from(timeout=5)

    assert sentence in first
    assert sentence in pushed
    await communicator.disconnect()


@pytest.mark.django_db(transaction=True)
@pytest.mark.asyncio
async def test_a_french_results_socket_gets_french_results(make_user, question):
    user = await sync_to_async(make_user)()
    client = await sync_to_async(_browser)(user)
    await sync_to_async(mark_session_verified)(client, user)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/polls/{question.pk}/results/",
        headers=_headers(client, accept="fr"),
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected

    first = await communicator.receive_from(timeout=5)
    await sync_to_async(results_publish)(question_id=question.pk)
    pushed = await communicator.receive_from(timeout=5)

    assert 'Total : <span id="total-votes">0</span> vote' in first
    assert 'Total : <span id="total-votes">0</span> vote' in pushed
    await communicator.disconnect()
