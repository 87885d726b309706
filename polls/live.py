"""Live results: every committed vote pushes the results partial to the question's group."""

from __future__ import annotations


def results_group(question_id: int) -> str:
    return f"poll-results-{question_id}"


def results_publish(*, question_id: int) -> None:
    """Push the rendered results partial to everyone watching this question (a no-op hook
    until live results are wired)."""
