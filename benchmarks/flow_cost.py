"""CPU per step of one voter's whole flow, in this process: a quick, repeatable
comparison of two commits on a noisy machine (``make bench``'s P2 needs minutes per run
and its figures drift with the machine's other work).

Django's test client drives the same requests P2's voters send (the whole middleware
stack), the tasks run here through Celery's ``apply`` (the code the worker runs, without
the broker), against a fresh database on the local PostgreSQL and the local Redis, with
the sandbox gateway; a group member stands for the open code page, so every transition
renders and publishes its status as under P2. Printed per step: process CPU (ms) and
SQL statements per flow; then the whole flow, and PostgreSQL's and Redis's own CPU over
the run. Not counted: the ASGI server, the websocket consumer, the provider's latency.

    .venv/bin/python -m benchmarks.flow_cost --flows 30
    .venv/bin/python -m benchmarks.flow_cost --flows 10 --sql        # the statements
    .venv/bin/python -m benchmarks.flow_cost --profile "code submit"  # cProfile, CPU time
    .venv/bin/python -m benchmarks.flow_cost --profile all --sort tottime --top 60

To compare two commits, check the other out in a worktree and alternate short runs of
each (benchmarks/README.md, "Comparing two commits").
"""

from __future__ import annotations

import argparse
import collections
import cProfile
import io
import pstats
import re
import time
from collections.abc import Callable
from typing import Any

from benchmarks import infra

LISTENER = "specific.flowcost!page"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--flows", type=int, default=30, help="flows measured (after 5 to warm up)")
    parser.add_argument("--sql", action="store_true", help="print one flow's statements")
    parser.add_argument("--profile", metavar="STEP", help="cProfile one step (or 'all')")
    parser.add_argument("--sort", default="cumulative", help="the profile's order (pstats)")
    parser.add_argument("--top", type=int, default=50, help="the profile's lines")
    infra.in_process_main(parser, _run)


def _run(args: argparse.Namespace) -> None:
    from asgiref.sync import async_to_sync
    from channels.layers import get_channel_layer
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    import tasks.verification as verification_tasks
    from benchmarks import fixtures
    from two_factor.gateways.sandbox.gateway import SandboxGateway
    from two_factor.live import verification_group

    voters = fixtures.voters_create(args.flows + 5, tag="flowcost")
    question_id, question_text = fixtures.poll_create()
    gateway = SandboxGateway.from_settings()
    layer = get_channel_layer()
    client = Client(HTTP_ACCEPT_LANGUAGE="en")  # one handler: middleware loads once
    cpu: dict[str, float] = collections.defaultdict(float)
    statements: collections.Counter[str] = collections.Counter()
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    show_sql = [False]

    def step(name: str, call: Callable[[], Any]) -> Any:
        profiling = profiler is not None and args.profile in ("all", name)
        with CaptureQueriesContext(connection) as captured:
            started = time.process_time()
            if profiling:
                profiler.enable()
            result = call()
            if profiling:
                profiler.disable()
            cpu[name] += time.process_time() - started
        statements[name] += len(captured.captured_queries)
        if show_sql[0]:
            print(f"=== {name}")
            for query in captured.captured_queries:
                print("   ", query["sql"][:200])
        return result

    def flow(voter: fixtures.Voter) -> None:
        client.cookies.clear()
        poll = f"/polls/{question_id}/"
        step("login page", lambda: client.get(f"/accounts/login/?next={poll}"))
        form = {"username": voter.username, "password": infra.PASSWORD, "next": poll}
        gate = step("login", lambda: client.post("/accounts/login/", form))["Location"]
        if gate == poll:  # a commit whose sign-in goes to the poll, which redirects
            gate = step("gate", lambda: client.get(poll))["Location"]
        step("number page", lambda: client.get(gate))
        answer = step("number submit", lambda: client.post("/2fa/", {"number": voter.number}))
        match = re.search(r"/2fa/v/([0-9a-f-]+)/", answer.get("Location", ""))
        assert match, f"the number submit answered {answer.status_code}: {_said(answer)}"
        verification_id = match.group(1)
        step("code page", lambda: client.get(f"/2fa/v/{verification_id}/"))
        # The open page's socket: every transition from now on renders and publishes.
        async_to_sync(layer.group_add)(verification_group(verification_id, "en"), LISTENER)
        step("send task", lambda: verification_tasks.send_code.apply(args=[verification_id]))
        code = next(m["code"] for m in gateway.inbox(50) if m["to"] == voter.number.lstrip("+"))
        url = f"/2fa/v/{verification_id}/code/"
        assert step("code submit", lambda: client.post(url, {"code": code})).status_code == 302
        step(
            "check task", lambda: verification_tasks.check_code.apply(args=[verification_id, code])
        )
        done = step("complete", lambda: client.get(f"/2fa/v/{verification_id}/complete/"))
        assert done.status_code == 302, f"completion answered {done.status_code}"
        page = step("poll page", lambda: client.get(poll))
        assert question_text in page.content.decode(), "the flow did not end on the poll"

    for voter in voters[:5]:
        flow(voter)
    cpu.clear()
    statements.clear()
    if profiler is not None:
        profiler = cProfile.Profile(time.process_time)
    servers_before = _server_cpu()
    show_sql[0] = args.sql
    for index, voter in enumerate(voters[5:]):
        flow(voter)
        show_sql[0] = False if index == 0 else show_sql[0]
    servers_after = _server_cpu()
    postgres, redis = (servers_after[0] - servers_before[0], servers_after[1] - servers_before[1])

    flows = args.flows
    for name, seconds in cpu.items():
        print(f"{name:15s} {1000 * seconds / flows:7.2f} ms  {statements[name] / flows:5.1f} SQL")
    total = sum(cpu.values())
    print(
        f"{'TOTAL':15s} {1000 * total / flows:7.2f} ms  {sum(statements.values()) / flows:5.1f} SQL"
    )
    print(
        f"{'postgres':15s} {1000 * postgres / flows:7.2f} ms  (redis {1000 * redis / flows:.2f} ms)"
    )
    if profiler is not None:
        out = io.StringIO()
        pstats.Stats(profiler, stream=out).sort_stats(args.sort).print_stats(args.top)
        print(out.getvalue())


def _said(response: Any) -> str:
    """What a page that did not move on says (its form errors), for the failure."""
    text = re.sub(r"<[^>]+>", " ", response.content.decode(errors="replace"))
    found = re.findall(r"[^.\n]*(?:wait|again|couldn't|can't|limit)[^.\n]*", text, flags=re.I)
    return "; ".join(" ".join(part.split()) for part in found[:3]) or "(no sentence found)"


def _server_cpu() -> tuple[float, float]:
    """CPU seconds of the machine's PostgreSQL and Redis processes (other users count too)."""
    return infra.named_cpu_seconds(("postgres",)), infra.named_cpu_seconds(("redis-server",))


if __name__ == "__main__":
    main()
