"""A poll's question and choices as its page shows them, kept by each process a moment.

Every ballot page read the question and its choices from PostgreSQL: two of the six
statements of a gated poll page, the same two rows for every voter of the poll. A process
now keeps what it read for ``BALLOT_SECONDS`` and shows that to the voters who come
meanwhile. A question or choice saved or deleted through the ORM (the admin, the demo
loader) is forgotten at once by the process that saved it, and after the commit; the
other processes show the change within ``BALLOT_SECONDS``.

What the ballot page shows only: casting a vote reads the question afresh (whether the
poll is open is decided on the row, never on a copy), and a choice that disappeared
meanwhile is refused with the usual sentence. The copies are read-only: a view that
wants to change a question reads its own.

Kept in the process, not in Redis: one more round trip would cost about what the read
saves, and the page would start needing Redis (pages load during a Redis outage).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models.signals import post_delete, post_save

from polls.models import CHOICES_OF_QUESTION, QUESTION_BY_ID, Choice, Question

__all__ = ["BALLOT_SECONDS", "Ballot", "ballot_forget", "ballot_of"]

# How long another process may show a ballot as it was. Short enough for an edit to
# reach every voter in a blink; long enough that a busy poll is read about once a second
# per process instead of once per voter.
BALLOT_SECONDS = 2.0
# Polls kept at most per process (the oldest read first to go past it).
_MAX_BALLOTS = 1000


@dataclass(frozen=True)
class Ballot:
    question: Question
    choices: tuple[Choice, ...]


_kept: dict[int, tuple[float, Ballot | None]] = {}
_lock = threading.Lock()


def _now() -> float:
    # A seam for tests to move the clock.
    return time.monotonic()


def ballot_of(question_id: int) -> Ballot | None:
    """The question and its choices (None: no such question), as read at most
    ``BALLOT_SECONDS`` ago by this process."""
    now = _now()
    kept = _kept.get(question_id)
    if kept is not None and kept[0] > now:
        return kept[1]
    question = QUESTION_BY_ID.first(question_id)
    ballot = (
        Ballot(question, tuple(CHOICES_OF_QUESTION.all(question.pk)))
        if question is not None
        else None
    )
    with _lock:
        if len(_kept) >= _MAX_BALLOTS:
            _kept.pop(next(iter(_kept)))
        _kept[question_id] = (now + BALLOT_SECONDS, ballot)
    return ballot


def ballot_forget(question_id: int | None = None) -> None:
    """Read this question (or every one) afresh next time."""
    with _lock:
        if question_id is None:
            _kept.clear()
        else:
            _kept.pop(question_id, None)


def _changed(sender: Any, instance: Question | Choice, **kwargs: Any) -> None:
    question_id = instance.pk if isinstance(instance, Question) else instance.question_id
    if question_id is None:
        return
    ballot_forget(question_id)
    # And once committed: a page read between the save and the commit saw the old rows.
    transaction.on_commit(lambda: ballot_forget(question_id))


for _model in (Question, Choice):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"polls.ballots.{_model.__name__}.save")
    post_delete.connect(
        _changed, sender=_model, dispatch_uid=f"polls.ballots.{_model.__name__}.delete"
    )
