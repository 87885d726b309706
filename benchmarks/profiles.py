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
import time
from collections.abc import Callable
from dataclasses import dataclass

from benchmarks import fixtures

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

    voters = fixtures.voters_create(iterations, tag="prof-start")
    requests = []
    for voter in voters:
        client = Client()
        client.force_login(_user(voter))
        requests.append((client, voter))

    def one(index: int) -> None:
        client, voter = requests[index]
        response = client.post("/2fa/", {"number": voter.number})
        assert response.status_code == 302, f"verification_start answered {response.status_code}"

    return _measure("verification_start (POST /2fa/ with a number)", iterations, one)


def _profile_code(iterations: int) -> Profile:
    from django.test import Client

    voters = fixtures.verified_voters_create(iterations, tag="prof-code")
    ids = fixtures.verifications_create(voters, status="sent")
    clients = []
    for voter in voters:
        client = Client()
        client.cookies["sessionid"] = voter.session_key
        clients.append(client)

    def one(index: int) -> None:
        response = clients[index].post(f"/2fa/v/{ids[index]}/code/", {"code": "123456"})
        assert response.status_code == 302, f"the code submit answered {response.status_code}"

    return _measure("code submit (POST /2fa/v/<id>/code/)", iterations, one)


def _profile_page(iterations: int) -> Profile:
    from django.test import Client

    voters = fixtures.verified_voters_create(1, tag="prof-page")
    question_id, text = fixtures.poll_create()
    client = Client()
    client.cookies["sessionid"] = voters[0].session_key

    def one(index: int) -> None:
        response = client.get(f"/polls/{question_id}/")
        assert response.status_code == 200 and text in response.content.decode(), (
            f"the poll page answered {response.status_code}"
        )

    one(0)  # templates compiled, connections open: profile the steady state
    return _measure("poll page (GET /polls/<id>/, verified session)", iterations, one)


def _user(voter: fixtures.Voter) -> object:
    from django.contrib.auth import get_user_model

    return get_user_model().objects.get(pk=voter.user_id)


def _measure(name: str, iterations: int, one: Callable[[int], None]) -> Profile:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

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
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("cumulative").print_stats(TOP_LINES)
    return Profile(
        name=name,
        requests=iterations,
        mean_ms=elapsed / iterations * 1000,
        queries=queries / iterations,
        top=_trim(out.getvalue()),
    )


def _trim(text: str) -> str:
    """pstats' table without its preamble (the file name line, blank lines)."""
    lines = text.splitlines()
    start = next((i for i, line in enumerate(lines) if "ncalls" in line), 0)
    return "\n".join(line.rstrip() for line in lines[start:] if line.strip())
