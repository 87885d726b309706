"""The verification page's websocket: /ws/2fa/<verification id>/."""

from __future__ import annotations

import logging
from typing import Any
from uuid import UUID

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import HttpRequest

from two_factor.live import verification_group
from two_factor.models import Verification
from two_factor.status import status_render

logger = logging.getLogger(__name__)

# 4403: the close code browsers see for "not yours or no such thing", deliberately the
# same for both so an id's existence is never revealed.
CLOSE_FORBIDDEN = 4403


def scope_request(scope: dict[str, Any]) -> HttpRequest:
    """A request standing in for the websocket's browser when rendering templates."""
    request = HttpRequest()
    request.method = "GET"
    request.path = scope.get("path", "/")
    request.user = scope["user"]
    request.session = scope["session"]
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"localhost").decode("latin-1")
    request.META["HTTP_HOST"] = host
    request.META["SERVER_NAME"] = host.split(":")[0]
    request.META["SERVER_PORT"] = "443" if scope.get("scheme") == "wss" else "80"
    csrf_cookie = scope.get("cookies", {}).get("csrftoken")
    if csrf_cookie:
        # The page's forms must carry the token that matches this browser's cookie.
        request.META["CSRF_COOKIE"] = csrf_cookie
    return request


class VerificationConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.verification_id = self._verification_id()
        if self.verification_id is None or not await self._is_own_verification():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = verification_group(self.verification_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        # Always start from the current state: reconnects and late joiners are never stale.
        await self._send_status()

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The page never needs to send anything; whatever arrives is ignored, not trusted.
        logger.debug("ignored a client frame on %s", self.verification_id)

    async def verification_changed(self, event: dict[str, Any]) -> None:
        await self._send_status()

    def _verification_id(self) -> UUID | None:
        try:
            return UUID(str(self.scope["url_route"]["kwargs"]["verification_id"]))
        except (KeyError, ValueError):
            return None

    @database_sync_to_async
    def _is_own_verification(self) -> bool:
        session = self.scope.get("session")
        own = Verification.objects.of_session(
            user=self.scope.get("user"), session_key=session.session_key if session else None
        )
        return own.filter(pk=self.verification_id).exists()

    @database_sync_to_async
    def _render_status(self) -> str | None:
        verification = Verification.objects.filter(pk=self.verification_id).first()
        if verification is None:
            return None
        return status_render(scope_request(self.scope), verification)

    async def _send_status(self) -> None:
        html = await self._render_status()
        if html is not None:
            await self.send(text_data=html)
