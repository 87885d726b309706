"""CPU of one send task as P5's worker runs it, in this process: the Vonage gateway
through the official SDK over HTTPS to the Verify double (its own process, no latency),
no page open on the verification, against a fresh database on the local PostgreSQL and
the local Redis:

    python -m benchmarks.send_cost [--sends 200] [--repetitions 5]
    python -m benchmarks.send_cost --profile --sort tottime --top 40   # cProfile, CPU time

Each repetition runs ``--sends`` queued verifications' send tasks through Celery's
``apply`` (the task the worker runs, without the broker: the message's receipt and
acknowledgement, about a millisecond more under P5, are not in the figure). The figure
is this process's own CPU counter per send, the median of the repetitions; P5's one
worker is bound by its interpreter lock, so this is what its sends/s follows. To compare
two commits, run it in a worktree of each, alternately (benchmarks/README.md, "Comparing
two commits").
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import statistics
import time
from pathlib import Path

from benchmarks import gateway_cost, infra


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sends", type=int, default=200, help="per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--profile", action="store_true", help="cProfile the sends")
    parser.add_argument("--sort", default="cumulative", help="the profile's order (pstats)")
    parser.add_argument("--top", type=int, default=50, help="the profile's lines")
    infra.in_process_main(parser, _run, argv)


def _run(args: argparse.Namespace) -> None:
    with gateway_cost.verify_double() as double:
        infra.use_vonage_double(double)
        os.environ["NO_PROXY"] = "localhost,127.0.0.1"
        from django.conf import settings
        from django.db import connection

        from benchmarks import fixtures
        from tasks.verification import send_code
        from two_factor.models import Status, Verification

        # in_process_world chose the sandbox; this benchmark is the Vonage gateway's.
        settings.TWO_FACTOR_GATEWAY = "vonage"
        settings.TWO_FACTOR_GATEWAY_CLASS = "two_factor.gateways.vonage.client.VonageGateway"
        settings.VONAGE_API_HOST = double["host"]
        settings.VONAGE_API_KEY = os.environ["VONAGE_API_KEY"]
        settings.VONAGE_API_SECRET = os.environ["VONAGE_API_SECRET"]

        warm = 20  # the thread's SDK client, the prepared statements, the caches
        voters = fixtures.voters_create(warm + args.sends * args.repetitions, tag="sendcost")
        fixtures.phones_create(voters)
        ids = fixtures.verifications_create(voters, status="queued")
        for verification_id in ids[:warm]:
            send_code.apply(args=[verification_id])
        profiler = cProfile.Profile(time.process_time) if args.profile else None
        per_send: list[float] = []
        print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
        for repetition in range(args.repetitions):
            start = warm + repetition * args.sends
            chunk = ids[start : start + args.sends]
            started = time.process_time()
            if profiler is not None:
                profiler.enable()
            for verification_id in chunk:
                send_code.apply(args=[verification_id])
            if profiler is not None:
                profiler.disable()
            per_send.append((time.process_time() - started) * 1000 / len(chunk))
            print(f"rep {repetition + 1}: {per_send[-1]:.3f} ms per send")
        print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
        sent = Verification.objects.filter(pk__in=ids, status=Status.SENT).count()
        if sent != len(ids):
            raise SystemExit(f"only {sent} of {len(ids)} sends reached 'sent'")
        print(f"CPU per send, median of the repetitions: {statistics.median(per_send):.3f} ms")
        if profiler is not None:
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
            print(out.getvalue())
        connection.close()


if __name__ == "__main__":
    main()
