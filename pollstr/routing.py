"""Every websocket path: the pages' sockets, then a catch-all that closes the rest."""

from __future__ import annotations

from channels.generic.websocket import AsyncWebsocketConsumer
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
