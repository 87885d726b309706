"""CPU of one status change a request makes from the row it read (a code's submission,
a completion, a send task's claim), both ways the services can make it, against the local
PostgreSQL. Interleaved, repetition by repetition, in one run:

    python -m benchmarks.transition_cost [--transitions 40] [--repetitions 10]

Each transition moves a fresh `sent` verification (an audit event already on it) to
`checking`, after the caller's own plain read of the row, as the views and the task do:

- "locked": BEGIN, the row read again under its lock, the UPDATE, the event's insert with
  the trail, COMMIT (``transition(..., locked=True)`` in ``transaction.atomic()``);
- "one statement": the guarded UPDATE and the event's insert in one data-modifying CTE
  (``transition_unless_changed``).

The figure is this process's own CPU counter over the transitions (Django's side, the
publish's check for open pages and the announcement included), per transition; fresh
rows are made before each timed block, outside it. PostgreSQL's own CPU is not in it.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from uuid import UUID

from benchmarks import infra
from benchmarks.stats import print_medians


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--transitions", type=int, default=40, help="per timed block")
    parser.add_argument("--repetitions", type=int, default=10)
    infra.in_process_main(parser, _run, argv)


def _run(args: argparse.Namespace) -> None:
    from django.db import connection, transaction

    from benchmarks import fixtures
    from two_factor.models import (
        VERIFICATION_BY_ID,
        VERIFICATION_LOCKED,
        Status,
        Verification,
        VerificationEvent,
    )
    from two_factor.services.transitions import transition, transition_unless_changed

    voters = fixtures.voters_create(args.transitions, tag="transitioncost")

    def fresh_rows() -> list[UUID]:
        # One live verification per user: the previous block's rows end first.
        Verification.objects.filter(status__in=[Status.SENT, Status.CHECKING]).update(
            status=Status.FAILED
        )
        rows = []
        for voter in voters:
            row = Verification.objects.create(
                user_id=voter.user_id, number=voter.number, status=Status.SENT, channel="sms"
            )
            VerificationEvent.objects.create(verification=row, to_status=Status.SENT)
            rows.append(row.pk)
        return rows

    def locked(pk: UUID) -> None:
        VERIFICATION_BY_ID.get(pk)  # the caller's read
        with transaction.atomic():
            row = VERIFICATION_LOCKED.get(pk)
            transition(row, Status.CHECKING, reason="benchmark", locked=True)

    def one_statement(pk: UUID) -> None:
        row = VERIFICATION_BY_ID.get(pk)  # the caller's read
        if not transition_unless_changed(row, Status.CHECKING, reason="benchmark"):
            raise RuntimeError("the guarded statement wrote nothing: the row moved")

    modes: dict[str, Callable[[UUID], Any]] = {
        "locked (BEGIN, locked read, UPDATE, insert, COMMIT)": locked,
        "one statement (transition_unless_changed)": one_statement,
    }
    results: dict[str, list[float]] = {name: [] for name in modes}
    for mode in modes.values():  # warm-up: compiled statements, prepared on the server
        for pk in fresh_rows()[:5]:
            mode(pk)
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    for repetition in range(args.repetitions):
        names = list(modes) if repetition % 2 == 0 else list(reversed(modes))
        for name in names:
            rows = fresh_rows()
            started = time.process_time()
            for pk in rows:
                modes[name](pk)
            results[name].append((time.process_time() - started) * 1000 / len(rows))
    connection.close()
    print_medians(
        "CPU per transition from the caller's read, median of the repetitions:",
        results,
        unit="ms",
        digits=3,
    )


if __name__ == "__main__":
    main()
