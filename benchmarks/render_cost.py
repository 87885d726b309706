"""CPU of one rendering of the status fragment (two_factor/verify.html's ``status``
partial): what every push renders once per language of its open pages, what a socket's
first frame and the poller render, and what the code page embeds. Under P2 these
renderings were the largest single piece of the workers' profile (flame-send-worker.svg)
and about a tenth of the web tier's.

    python -m benchmarks.render_cost [--renders 500] [--repetitions 5]

For each state a voter's page shows on the way (queued, sending, sent, checking,
verified), one verification is walked there through the services' own transitions
against the local PostgreSQL, its audit trail read once; then ``render_fragment`` (the
context and the template, as ``two_factor.live`` renders a push) runs ``--renders``
times, in English and in French alternately. The figure is this process's own CPU
counter over those renderings, per rendering; the states interleaved, repetition by
repetition. To compare two commits, run it in a worktree of each, alternately
(benchmarks/README.md, "Comparing two commits").
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks import infra
from benchmarks.stats import print_medians

STATES = ("queued", "sending", "sent", "checking", "verified")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--renders", type=int, default=500, help="per timed block")
    parser.add_argument("--repetitions", type=int, default=5)
    infra.in_process_main(parser, _run, argv)


def _run(args: argparse.Namespace) -> None:
    from django.db import connection

    from benchmarks import fixtures
    from two_factor.live import render_fragment
    from two_factor.models import TRAIL_OF_VERIFICATION, VERIFICATION_BY_ID, Status, Verification
    from two_factor.services.transitions import transition

    voters = fixtures.voters_create(len(STATES), tag="rendercost")
    walk = [Status.SENDING, Status.SENT, Status.CHECKING, Status.VERIFIED]
    shown = {}
    for state, voter in zip(STATES, voters, strict=True):
        row = Verification.objects.create(
            user_id=voter.user_id, number=voter.number, status=Status.QUEUED, channel="sms"
        )
        row.workflow = ["sms", "voice"]
        row.save(update_fields=["workflow"])
        for step in walk[: STATES.index(state)]:
            transition(VERIFICATION_BY_ID.get(row.pk), step, reason="benchmark")
        verification = VERIFICATION_BY_ID.get(row.pk)
        shown[state] = (verification, TRAIL_OF_VERIFICATION.all(row.pk))
        if verification.status != state:
            raise RuntimeError(f"walked to {verification.status}, not {state}")

    def render(state: str, renders: int) -> None:
        verification, events = shown[state]
        for index in range(renders):
            render_fragment(verification, events=events, language="fr" if index % 2 else "en")

    for state in STATES:  # warm-up: templates loaded, catalogues read
        render(state, 20)
    results: dict[str, list[float]] = {state: [] for state in STATES}
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    for repetition in range(args.repetitions):
        for state in STATES if repetition % 2 == 0 else reversed(STATES):
            started = time.process_time()
            render(state, args.renders)
            results[state].append((time.process_time() - started) * 1000 / args.renders)
    connection.close()
    print_medians(
        "CPU per status rendering (context and template), median of the repetitions:",
        results,
        unit="ms",
        digits=3,
    )


if __name__ == "__main__":
    main()
