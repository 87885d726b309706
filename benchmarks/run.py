"""Issue 7's benchmarks against real processes; writes RESULTS.md, results.json and a plot.

    python -m benchmarks.run                       # everything (make bench), ~25 min
    python -m benchmarks.run --quick               # short smoke run (make bench-quick)
    python -m benchmarks.run --only P2,P5 --quick  # a subset
    python -m benchmarks.run --profile             # only the profiles

Needs PostgreSQL (``--postgres``, trust auth; the benchmark owns the database
``pollstr_bench``) and Redis (``--redis-url``; keys under a prefix of this run only).
See benchmarks/README.md for what each figure is.
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
import traceback
from contextlib import ExitStack
from pathlib import Path

from benchmarks import cost, infra, report
from benchmarks.stats import Figure

BENCH_DIR = Path(__file__).resolve().parent
SCENARIOS = ("P1", "P2", "P3", "P4", "P5", "profile")
SHARED_POSTGRES = "postgres://postgres@127.0.0.1:5432"
SHARED_REDIS = "redis://127.0.0.1:6379/14"


def _only(text: str) -> tuple[str, ...]:
    chosen = tuple(
        dict.fromkeys(
            part.strip().upper().replace("PROFILE", "profile")
            for part in text.split(",")
            if part.strip()
        )
    )
    unknown = [part for part in chosen if part not in SCENARIOS]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"choose among {', '.join(SCENARIOS)} (comma-separated), got {text!r}"
        )
    return chosen


def _positive(kind: type, high: float) -> object:
    def parse(text: str) -> object:
        value = kind(text)
        if not 0 < value <= high:
            raise argparse.ArgumentTypeError(f"must be above 0 and at most {high}, got {text}")
        return value

    return parse


def _counts(text: str) -> tuple[int, ...]:
    try:
        counts = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected e.g. 1,2,4, got {text!r}") from None
    if not counts or any(not 1 <= count <= 256 for count in counts):
        raise argparse.ArgumentTypeError("each count must be between 1 and 256")
    return counts


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.run", description=__doc__.splitlines()[0]
    )
    parser.add_argument(
        "--only",
        type=_only,
        default=SCENARIOS,
        help="comma-separated subset of P1,P2,P3,P4,P5,profile (default all)",
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="short durations and 200 sockets: a smoke run, not a measurement",
    )
    parser.add_argument(
        "--profile", action="store_true", help="only the profiles (= --only profile)"
    )
    parser.add_argument(
        "--reps",
        type=_positive(int, 20),
        default=3,
        help="interleaved repetitions per figure (default 3)",
    )
    parser.add_argument(
        "--latency",
        type=_positive(float, 5),
        default=0.3,
        help="the Verify double's latency per call, seconds (default 0.3)",
    )
    parser.add_argument(
        "--p4-sockets",
        type=_positive(int, 10000),
        default=None,
        help="sockets per P4 kind (default 2000, 200 with --quick)",
    )
    parser.add_argument(
        "--p5-processes",
        type=_counts,
        default=None,
        help="P5 worker process counts (default 1,2,4)",
    )
    parser.add_argument(
        "--p5-concurrency",
        type=_counts,
        default=None,
        help="P5 concurrencies of one process (default 1,10,50,100)",
    )
    parser.add_argument("--profile-requests", type=_positive(int, 1000), default=40)
    parser.add_argument(
        "--pg-budget",
        type=_positive(int, 500),
        default=60,
        help="most PostgreSQL connections a P5 configuration may hold (default "
        "60: the server is shared)",
    )
    parser.add_argument(
        "--postgres",
        default=None,
        help="PostgreSQL server URL, no database (default: a private cluster this run "
        f"starts, which counts statements; e.g. {SHARED_POSTGRES})",
    )
    parser.add_argument(
        "--redis-url",
        default=None,
        help=f"Redis URL (default: a private redis-server; e.g. {SHARED_REDIS})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help="directory for RESULTS.md and the plot (default benchmarks/, "
        "benchmarks/results/quick/ with --quick)",
    )
    parser.add_argument(
        "--flame-raw",
        action="store_true",
        help="P2's profiles as collapsed stacks (flame-*.txt) instead of SVG flame graphs",
    )
    parser.add_argument("--keep-db", action="store_true", help="keep pollstr_bench afterwards")
    args = parser.parse_args(argv)
    if args.profile:
        args.only = ("profile",)
    if args.out is None:
        args.out = BENCH_DIR / "results" / "quick" if args.quick else BENCH_DIR
    return args


def build_plan(args: argparse.Namespace) -> object:
    from benchmarks.scenarios import Plan

    overrides: dict[str, object] = {
        "reps": args.reps,
        "latency": args.latency,
        "pg_budget": args.pg_budget,
        "flame_raw": args.flame_raw,
    }
    if args.p4_sockets:
        overrides["p4_sockets"] = args.p4_sockets
    if args.p5_processes:
        overrides["p5_processes"] = args.p5_processes
    if args.p5_concurrency:
        overrides["p5_concurrency"] = args.p5_concurrency
    return Plan.quick(**overrides) if args.quick else Plan(**overrides)


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = build_plan(args)
    nofile = infra.raise_open_files_limit()
    rep = report.Report(
        machine=report.Machine.here(),
        started=dt.datetime.now(dt.UTC),
        load_before=report.load_average(),
        mode=("quick" if args.quick else "full") + f", {', '.join(args.only)}",
    )
    log(f"load average {rep.load_before}; open files limit {nofile}")
    tmpdir = Path(tempfile.mkdtemp(prefix="pollstr-bench-"))
    try:
        with ExitStack() as stack:
            servers = None
            if args.postgres is None and args.redis_url is None:
                log("starting a private PostgreSQL (pg_stat_statements) and Redis")
                servers = stack.enter_context(cost.private_servers(tmpdir / "servers"))
            world = infra.new_world(
                args.postgres or (servers.postgres if servers else SHARED_POSTGRES),
                args.redis_url or (servers.redis_url if servers else SHARED_REDIS),
            )
            try:
                infra.database_create(world)
                infra.configure_django(world)
                log("migrating pollstr_bench")
                infra.database_migrate()
                if servers is not None:
                    cost.prepare_database(world)
                with infra.verify_double(args.latency) as double:
                    infra.use_vonage_double(double)
                    plot = _run(args, plan, world, double, tmpdir, rep, servers)
            finally:
                infra.redis_cleanup(world)
                if not args.keep_db:
                    infra.database_drop(world)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)
    rep.load_after = report.load_average()
    _write(args, rep, plot)
    return 0


def _run(
    args: argparse.Namespace,
    plan: object,
    world: infra.World,
    double: dict[str, str],
    tmpdir: Path,
    rep: report.Report,
    servers: cost.Servers | None,
) -> dict[str, object]:
    """Run the chosen scenarios into ``rep``; return what the plot needs."""
    from benchmarks import scenarios
    from tests import stack

    deployment = infra.compose_defaults()
    env = infra.child_env(world)
    ctx = scenarios.Context(
        world=world,
        env=env,
        plan=plan,
        deployment=deployment,
        codes_url=double["codes_url"],
        log=log,
        tmpdir=tmpdir,
        out=args.out,
        servers=servers,
    )
    from django.conf import settings  # configured above: what the web children read too

    rep.setup = {
        "Pollstr web": f"`{' '.join(stack.web_command(host='127.0.0.1', port='PORT'))}`, "
        f"WEB_CONCURRENCY={deployment.web_concurrency} (P4: 1), "
        f"WEB_HTTP_THREADS={settings.WEB_HTTP_THREADS}",
        "Pollstr worker": f"`{' '.join(stack.worker_command())}`, "
        f"pool {deployment.worker_pool}, concurrency {deployment.worker_concurrency}",
        "sync baseline": "benchmarks/sync_baseline under `django runserver` (threaded), SQLite",
        "Verify double": f"tests/fakes/verify_server.py over HTTPS, {args.latency * 1000:.0f} ms "
        "per call, own process; gateway `vonage` (official SDK)",
        "durations": f"P1 {plan.p1_duration:g} s, P2 {plan.p2_duration:g} s, "
        f"P3 {plan.p3_duration:g} s, P5 {plan.p5_duration:g} s per run; "
        f"P4 {plan.p4_sockets} sockets",
        "repetitions": str(plan.reps),
    }
    want_p1, want_p2 = "P1" in args.only, "P2" in args.only
    steps = [
        (
            "P1, P2" if want_p1 and want_p2 else "P2" if want_p2 else "P1",
            lambda: scenarios.flows(ctx, want_p1=want_p1, want_p2=want_p2),
        ),
        ("P3", lambda: scenarios.pages(ctx)),
        ("P4", lambda: scenarios.sockets(ctx)),
        ("P5", lambda: scenarios.starts(ctx)),
    ]
    for name, step in steps:
        if not set(name.split(", ")) & set(args.only):
            continue
        started = time.monotonic()
        try:
            figures: list[Figure] = step()
        except Exception as error:
            log(f"{name} failed: {error}")
            traceback.print_exc()
            rep.notes.append(f"{name} did not complete: {str(error).splitlines()[0]}")
            continue
        rep.figures += figures
        log(f"{name} done in {time.monotonic() - started:.0f} s")
    if "profile" in args.only:
        from benchmarks.profiles import run_profiles

        log(f"profiling ({args.profile_requests} requests each)")
        rep.profiles = run_profiles(args.profile_requests)
    rep.figures.sort(key=lambda f: f.key.split(".")[0])  # stable: scenario order kept
    rep.notes += ctx.notes
    rep.sections += ctx.sections
    rep.setup["plot"] = "latency_vs_load.png" if ctx.plot else "none (P1/P2 not run)"
    return ctx.plot


def _write(args: argparse.Namespace, rep: report.Report, plot: dict[str, object]) -> None:
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "RESULTS.md").write_text(report.render_markdown(rep))
    json_dir = args.out / "results" if args.out == BENCH_DIR else args.out
    json_dir.mkdir(parents=True, exist_ok=True)
    report.write_json(rep, json_dir / "results.json")
    if report.write_plot(plot, args.out / "latency_vs_load.png"):
        log(f"plot: {args.out / 'latency_vs_load.png'}")
    log(f"wrote {args.out / 'RESULTS.md'}")
    print(report.render_markdown(rep))


if __name__ == "__main__":
    sys.exit(main())
