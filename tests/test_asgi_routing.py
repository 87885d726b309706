from __future__ import annotations

import pytest
from channels.testing import WebsocketCommunicator

from pollstr.asgi import application

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.asyncio]

HEADERS = [(b"origin", b"http://localhost"), (b"host", b"localhost")]


@pytest.mark.parametrize(
    "path", ["/", "/ws/", "/ws/nothing/here/", "/ws/polls/abc/results/", "/2fa/", "/ws/2fa/"]
)
async def test_a_websocket_to_an_unknown_path_is_closed_with_4404(path: str) -> None:
    communicator = WebsocketCommunicator(application, path, headers=HEADERS)

    connected, code = await communicator.connect(timeout=5)

    assert not connected
    assert code == 4404


async def test_a_foreign_origin_is_refused_before_any_routing() -> None:
    headers = [(b"origin", b"https://evil.example"), (b"host", b"localhost")]
    communicator = WebsocketCommunicator(application, "/ws/nothing/", headers=headers)

    connected, code = await communicator.connect(timeout=5)

    assert not connected
    assert code != 4404


@pytest.mark.parametrize("origin", [b"http://[::1", b"http://[", b"http://localhost:99999"])
async def test_an_unparseable_origin_is_refused_not_a_server_error(origin):
    from channels.testing import WebsocketCommunicator

    from pollstr.asgi import application

    communicator = WebsocketCommunicator(
        application, "/ws/polls/1/results/", headers=[(b"origin", origin), (b"host", b"localhost")]
    )
    connected, _ = await communicator.connect(timeout=5)
    assert connected is False
