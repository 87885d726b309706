"""Live results: every committed vote pings the question's group; each open results page
re-renders the same results partial the page itself uses."""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

RESULTS_TEMPLATE = "polls/results.html#results"


def results_group(question_id: int) -> str:
    return f"poll-results-{int(question_id)}"


def results_publish(*, question_id: int) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(results_group(question_id), {"type": "results.changed"})
    except Exception:
        # The vote is committed either way; a page that missed it catches up on reload.
        logger.exception("Could not publish results of question %s", question_id)
