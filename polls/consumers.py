"""The results page's websocket: /ws/polls/<question id>/results/."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from channels.db import database_sync_to_async
from django.template.loader import render_to_string
from django.utils import translation

from polls.live import RESULTS_TEMPLATE, results_group
from polls.models import Question
from two_factor.consumers import SessionBoundConsumer
from two_factor.session import session_is_verified, session_verified_until


class ResultsConsumer(SessionBoundConsumer):
    """Streams a question's results to a phone-verified session, for as long as it is one
    (logout, a password change or an ended verified flag close the socket)."""

    relayed = True  # thousands of pages may watch one poll

    def live_group(self) -> str:
        return results_group(self._question_id(), self.language)

    def may_watch(self, *, user: Any, session: Mapping[str, Any]) -> bool:
        # The same rule as the results page: a logged-in, phone-verified session.
        if not session_is_verified(session=session, user=user):
            return False
        return Question.objects.published().filter(pk=self._question_id()).exists()

    def access_expires(self, *, user: Any, session: Any) -> float | None:
        # may_watch let the socket in, so the flag holds; the clock ends it, or the
        # session first.
        flag_ends = session_verified_until(session=session, user=user) or 0.0
        session_ends = super().access_expires(user=user, session=session)
        return min(flag_ends, session_ends) if session_ends is not None else flag_ends

    async def results_changed(self, event: dict[str, Any]) -> None:
        html = event.get("html")
        if isinstance(html, str):
            await self.push_html(html)  # rendered once by polls.live for every socket
        else:
            await self.push()

    async def send_current(self) -> None:
        await self.send(text_data=await self._render())

    def _question_id(self) -> int:
        return int(self.scope["url_route"]["kwargs"]["question_id"])

    @database_sync_to_async
    def _render(self) -> str:
        question = Question.objects.get(pk=self._question_id())
        with translation.override(self.language or None):
            return render_to_string(RESULTS_TEMPLATE, question.results())
