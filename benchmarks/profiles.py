"""``--profile``: cProfile of the three hot requests, in this process, through Django's
test client (the whole middleware stack) against the bench PostgreSQL and Redis:

- ``verification_start``: POST /2fa/ with a new number (number set, rate limits, row
  locks, inserts, the enqueue and the publish after commit);
- the code submit: POST /2fa/v/<id>/code/ on a verification whose code is out;
- the poll page: GET /polls/<id>/ from a phone-verified session.

Tasks are enqueued to the bench namespace's broker and never run (no worker listens).
"""

from __future__ import annotations

import cProfile
import io
import pstats
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from benchmarks import fixtures
from benchmarks.infra import BASE_DIR

TOP_LINES = 18


@dataclass(frozen=True)
class Profile:
    name: str
    requests: int
    mean_ms: float
    queries: float
    top: str  # pstats lines, sorted by cumulative time


def run_profiles(iterations: int) -> list[Profile]:
    return [
        _profile_start(iterations),
        _profile_code(iterations),
        _profile_page(iterations),
    ]


def _profile_start(iterations: int) -> Profile:
    from django.test import Client

    voters = fixtures.logged_in_voters_create(iterations, tag="prof-start")
    client = Client()  # one handler: middleware loads once, as in a server process

    def one(index: int) -> None:
        client.cookies["sessionid"] = voters[index].session_key
        response = client.post("/2fa/", {"number": voters[index].number})
        assert response.status_code == 302, f"verification_start answered {response.status_code}"

    return _measure("verification_start (POST /2fa/ with a number)", iterations, one, client)


def _profile_code(iterations: int) -> Profile:
    from django.test import Client

    voters = fixtures.verified_voters_create(iterations, tag="prof-code")
    ids = fixtures.verifications_create(voters, status="sent")
    client = Client()

    def one(index: int) -> None:
        client.cookies["sessionid"] = voters[index].session_key
        response = client.post(f"/2fa/v/{ids[index]}/code/", {"code": "123456"})
        assert response.status_code == 302, f"the code submit answered {response.status_code}"

    return _measure("code submit (POST /2fa/v/<id>/code/)", iterations, one, client)


def _profile_page(iterations: int) -> Profile:
    from django.test import Client

    voters = fixtures.verified_voters_create(1, tag="prof-page")
    question_id, text = fixtures.poll_create()
    client = Client()
    client.cookies["sessionid"] = voters[0].session_key

    def one(index: int) -> None:
        response = client.get(f"/polls/{question_id}/")
        assert response.status_code == 200, f"the poll page answered {response.status_code}"
        assert text in response.content.decode(), "the poll page does not show the question"

    return _measure("poll page (GET /polls/<id>/, verified session)", iterations, one, client)


def _measure(name: str, iterations: int, one: Callable[[int], None], client: Any) -> Profile:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    _warm_up(client)
    profiler = cProfile.Profile()
    elapsed = 0.0
    queries = 0
    for index in range(iterations):
        with CaptureQueriesContext(connection) as captured:
            started = time.perf_counter()
            profiler.enable()
            one(index)
            profiler.disable()
            elapsed += time.perf_counter() - started
        queries += len(captured.captured_queries)
    return Profile(
        name=name,
        requests=iterations,
        mean_ms=elapsed / iterations * 1000,
        queries=queries / iterations,
        top=_top(profiler),
    )


def _warm_up(client: Any) -> None:
    """Middleware loaded, templates compiled, connections open: profile the steady state."""
    client.get("/healthz")
    client.get("/accounts/login/")


def _top(profiler: cProfile.Profile) -> str:
    """Where the time goes: functions by own time, then the project's own functions by
    cumulative time (the view, services, middleware)."""
    own = io.StringIO()
    pstats.Stats(profiler, stream=own).sort_stats("tottime").print_stats(TOP_LINES)
    ours = io.StringIO()
    project = r"/(two_factor|polls|pollstr|accounts|tasks)/"
    pstats.Stats(profiler, stream=ours).sort_stats("cumulative").print_stats(project, TOP_LINES)
    return (
        "by own time:\n"
        + _trim(own.getvalue())
        + "\n\nproject functions by cumulative time:\n"
        + _trim(ours.getvalue())
    )


def _trim(text: str) -> str:
    """pstats' table without its preamble, paths shortened to the project or package."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    kept = [line.rstrip() for line in lines[start:] if line.strip()]
    return "\n".join(_short_path(line) for line in kept)


def _short_path(line: str) -> str:
    line = line.replace(f"{BASE_DIR}/", "")
    return re.sub(r"\S*/site-packages/", "", re.sub(r"\S*/lib/python3\.\d+/", "", line))
