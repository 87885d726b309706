"""Every websocket path: the pages' sockets, then a catch-all that closes the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import WebsocketDenier
from django.urls import re_path

from polls.routing import websocket_urlpatterns as polls_websockets
from two_factor.routing import websocket_urlpatterns as two_factor_websockets

# "No such socket": a stale page or a probe gets a clean close, never a server error.
CLOSE_NOT_FOUND = 4404


class UnknownPathConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)


websocket_urlpatterns = [
    *two_factor_websockets,
    *polls_websockets,
    re_path(r"", UnknownPathConsumer.as_asgi()),
]


class RefuseUnparseableOrigin:
    """Denies a websocket whose Origin header can't be parsed ("http://[::1", a port out of
    range): channels' origin validator would raise on it instead of refusing."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(
        self,
        scope: MutableMapping[str, Any],
        receive: Callable[[], Awaitable[MutableMapping[str, Any]]],
        send: Callable[[MutableMapping[str, Any]], Awaitable[None]],
    ) -> None:
        for name, value in scope.get("headers") or []:
            if name == b"origin":
                try:
                    parsed = urlparse(value.decode("latin1"))
                    _ = (parsed.hostname, parsed.port)  # both raise on a malformed netloc
                except ValueError:
                    await WebsocketDenier()(scope, receive, send)
                    return
        await self.app(scope, receive, send)
