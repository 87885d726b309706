"""CPU of one read of a verification row, through the ORM and as a prepared read
(``pollstr.db.prepared``), unlocked and locked, against the local PostgreSQL.
Interleaved, repetition by repetition, in one run:

    python -m benchmarks.orm_cost [--reads 1000] [--repetitions 5]

The figure is this process's own CPU counter over the reads (Django's side: building
and compiling the query, psycopg, building the instance), per read. The row is read by
primary key in its own transaction-less autocommit (unlocked) or inside one atomic block
(locked), as the services do.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import infra
from benchmarks.stats import print_medians


def per_read(read: Callable[[], Any], reads: int, *, locked: bool) -> float:
    """CPU milliseconds per call of ``read`` (after a warm-up)."""
    from django.db import transaction

    for _ in range(20):
        with transaction.atomic():
            read()
    started = time.process_time()
    if locked:
        with transaction.atomic():
            for _ in range(reads):
                read()
    else:
        for _ in range(reads):
            read()
    return (time.process_time() - started) * 1000 / reads


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reads", type=int, default=1000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args(argv)

    world = infra.new_world(args.postgres, args.redis_url)
    infra.database_create(world)
    try:
        infra.configure_django(world)
        infra.database_migrate()
        _run(args)
    finally:
        infra.database_drop(world)


def _run(args: argparse.Namespace) -> None:
    from django.db import connection

    from benchmarks import fixtures
    from two_factor.models import VERIFICATION_BY_ID, VERIFICATION_LOCKED, Verification

    voter = fixtures.voters_create(1, tag="ormcost")[0]
    row = Verification.objects.create(user_id=voter.user_id, number=voter.number)
    pk = row.pk
    modes: dict[str, tuple[Callable[[], Any], bool]] = {
        "ORM, Verification.objects.get(pk=…)": (lambda: Verification.objects.get(pk=pk), False),
        "prepared, VERIFICATION_BY_ID.get(…)": (lambda: VERIFICATION_BY_ID.get(pk), False),
        "ORM, select_for_update().get(pk=…)": (
            lambda: Verification.objects.select_for_update().get(pk=pk),
            True,
        ),
        "prepared, VERIFICATION_LOCKED.get(…)": (lambda: VERIFICATION_LOCKED.get(pk), True),
    }
    results: dict[str, list[float]] = {name: [] for name in modes}
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    for _ in range(args.repetitions):
        for name, (read, locked) in modes.items():
            results[name].append(per_read(read, args.reads, locked=locked))
    connection.close()
    print_medians(
        "CPU per read of one verification row, median of the repetitions:",
        results,
        unit="ms",
        digits=3,
    )


if __name__ == "__main__":
    main()
