"""Live results: every committed vote renders the results partial (the one the page itself
uses) once and sends it to the question's group; each open results page just relays it."""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer
from django.template.loader import render_to_string

from pollstr.channel_layers import group_send

logger = logging.getLogger(__name__)

RESULTS_TEMPLATE = "polls/results.html#results"


def results_group(question_id: int) -> str:
    return f"poll-results-{int(question_id)}"


def results_message(*, question_id: int, html: str) -> dict[str, str]:
    """What a results page's socket receives: the fragment, and the group it is for (each
    web process relays it to its own sockets, pollstr/fanout.py)."""
    return {"type": "results.changed", "html": html, "group": results_group(question_id)}


def results_render(*, question_id: int) -> str:
    """The results fragment: the same for every watcher (nothing per voter in it)."""
    from polls.models import Question

    return render_to_string(RESULTS_TEMPLATE, Question.objects.get(pk=question_id).results())


def results_publish(*, question_id: int) -> None:
    """Render the fragment once and send it to every open results page."""
    if get_channel_layer() is None:
        return
    try:
        html = results_render(question_id=question_id)
        group_send(results_group(question_id), results_message(question_id=question_id, html=html))
    except Exception:
        # The vote is committed either way; a page that missed it catches up on reload.
        logger.exception("Could not publish results of question %s", question_id)
