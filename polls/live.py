"""Live results: every committed vote renders the results partial (the one the page itself
uses) once per language whose pages are open and sends it to the question's group in that
language; each open results page just relays it."""

from __future__ import annotations

import logging

from channels.layers import get_channel_layer
from django.template.loader import render_to_string
from django.utils import translation

from pollstr.channel_layers import group_send
from pollstr.languages import language_group, languages_listening

logger = logging.getLogger(__name__)

RESULTS_TEMPLATE = "polls/results.html#results"


def results_group(question_id: int, language: str | None = None) -> str:
    """The group of the question's results pages in `language` (None: the default one).
    Each web process is in it once while it has such pages (pollstr/fanout.py)."""
    return language_group(f"poll-results-{int(question_id)}", language)


def results_message(*, question_id: int, html: str, language: str | None = None) -> dict[str, str]:
    """What a results page's socket receives: the fragment, and the group it is for (each
    web process relays it to its own sockets, pollstr/fanout.py)."""
    group = results_group(question_id, language)
    return {"type": "results.changed", "html": html, "group": group}


def results_render(*, question_id: int, language: str | None = None) -> str:
    """The results fragment in `language` (None: the active one): the same for every
    watcher of that language (nothing per voter in it)."""
    from polls.models import Question

    results = Question.objects.get(pk=question_id).results()
    with translation.override(language or translation.get_language()):
        return render_to_string(RESULTS_TEMPLATE, results)


def results_publish(*, question_id: int) -> None:
    """Render the fragment once per language whose results pages are open, and send each
    rendering to the pages of that language."""
    if get_channel_layer() is None:
        return
    try:
        for language, group, members in languages_listening(
            lambda code: results_group(question_id, code)
        ):
            html = results_render(question_id=question_id, language=language)
            message = results_message(question_id=question_id, html=html, language=language)
            group_send(group, message, members=members)
    except Exception:
        # The vote is committed either way; a page that missed it catches up on reload.
        logger.exception("Could not publish results of question %s", question_id)
