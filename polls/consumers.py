"""The results page's websocket: /ws/polls/<question id>/results/."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.db import database_sync_to_async
from django.template.loader import render_to_string

from polls.live import RESULTS_TEMPLATE, results_group
from polls.models import Question
from two_factor.consumers import SessionBoundConsumer
from two_factor.session import session_is_verified


class ResultsConsumer(SessionBoundConsumer):
    """Streams a question's results to a phone-verified session, for as long as it is one
    (logout, a password change or an ended verified flag close the socket)."""

    def live_group(self) -> str:
        return results_group(self._question_id())

    def may_watch(self, *, user: Any, session: Mapping[str, Any]) -> bool:
        # The same rule as the results page: a logged-in, phone-verified session.
        if not session_is_verified(session=session, user=user):
            return False
        return Question.objects.published().filter(pk=self._question_id()).exists()

    async def results_changed(self, event: dict[str, Any]) -> None:
        await self.push()

    async def send_current(self) -> None:
        await self.send(text_data=await self._render())

    def _question_id(self) -> int:
        return int(self.scope["url_route"]["kwargs"]["question_id"])

    @database_sync_to_async
    def _render(self) -> str:
        question = Question.objects.get(pk=self._question_id())
        return render_to_string(RESULTS_TEMPLATE, question.results())
