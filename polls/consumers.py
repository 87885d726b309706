"""The results page's websocket: /ws/polls/<question id>/results/."""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.template.loader import render_to_string

from polls.live import RESULTS_TEMPLATE, results_group
from polls.models import Question
from two_factor.session import session_is_verified

CLOSE_FORBIDDEN = 4403


class ResultsConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        self.question_id = self.scope["url_route"]["kwargs"]["question_id"]
        if not await self._may_watch():
            await self.close(code=CLOSE_FORBIDDEN)
            return
        self.group = results_group(self.question_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_results()

    async def disconnect(self, code: int) -> None:
        group = getattr(self, "group", None)
        if group:
            await self.channel_layer.group_discard(group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Client frames carry nothing we need: ignored."""

    async def results_changed(self, event: dict[str, Any]) -> None:
        await self._send_results()

    @database_sync_to_async
    def _may_watch(self) -> bool:
        # The same rule as the results page: a logged-in, phone-verified session.
        user = self.scope.get("user")
        session = self.scope.get("session")
        if user is None or not user.is_authenticated or session is None:
            return False
        if not session_is_verified(session=session, user=user):
            return False
        return Question.objects.published().filter(pk=self.question_id).exists()

    @database_sync_to_async
    def _render(self) -> str:
        question = Question.objects.get(pk=self.question_id)
        return render_to_string(RESULTS_TEMPLATE, question.results())

    async def _send_results(self) -> None:
        await self.send(text_data=await self._render())
