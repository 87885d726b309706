"""An idle websocket on the full stack stays open: daphne with the Redis channel layer.

A results page left open shows nothing new for minutes at a time; its socket must not be
dropped by the server in between (the channel layer's blocking receive on Redis must
never outlast the Redis client's socket timeout), and the next vote still reaches it.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import pytest
from django.db import connection, transaction
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection, connect

from polls.models import Question
from polls.services import vote_cast
from tests import stack
from tests.conftest import PASSWORD
from tests.phone_numbers import give_phone, unique_number
from tests.two_factor.verifications import mark_session_verified

pytestmark = [pytest.mark.integration, pytest.mark.redis, pytest.mark.timeout(120)]

# Idle for longer than every timer that could end a quiet socket, several times over:
# the channel layer's 5 s blocking read and its client's 10 s read timeout, its 15 s
# health check, daphne's 20 s ping, and the session re-read (every RECHECK_SECONDS here).
IDLE_SECONDS = 35.0
RECHECK_SECONDS = 10
REDIS_ERRORS = ("Timeout reading", "Traceback", "TimeoutError", "ConnectionError")


@pytest.fixture
def web(transactional_db: None, settings: Any) -> Iterator[stack.WebServer]:
    """Daphne on the shared Redis (a namespace of its own) and this test's database."""
    if not connection.settings_dict["ENGINE"].endswith("postgresql"):
        pytest.skip("daphne is a separate process: it cannot share the SQLite test database")
    redis_url = stack.redis_url_for_tests()
    if not stack.redis_ping(redis_url):
        pytest.skip(f"needs Redis at TEST_REDIS_URL={redis_url}")
    prefix = f"{stack.SESSION_PREFIX}-idle-{secrets.token_hex(3)}"
    # This process publishes votes into the same channel layer namespace as daphne.
    for name, value in stack.redis_settings(redis_url=redis_url, prefix=prefix).items():
        setattr(settings, name, value)
    env = stack.stack_env(
        database_url=stack.database_url(connection.settings_dict),
        redis_url=redis_url,
        prefix=prefix,
        extra={"LIVE_SOCKET_RECHECK_SECONDS": str(RECHECK_SECONDS)},
    )
    try:
        with stack.daphne_server(env) as server:
            yield server
    finally:
        stack.redis_delete_prefix(redis_url, prefix)


def _watcher_cookie(username: str) -> str:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user(username=username, password=PASSWORD)
    client = Client()
    client.force_login(user)
    mark_session_verified(client, user)
    return client.cookies["sessionid"].value


def _open_results_socket(web: stack.WebServer, question: Question, cookie: str) -> ClientConnection:
    # No client pings: a browser tab sends nothing either, so the socket is truly idle.
    return connect(
        web.url.replace("http://", "ws://") + f"/ws/polls/{question.pk}/results/",
        origin=web.url,
        additional_headers={"Cookie": f"sessionid={cookie}"},
        proxy=None,
        ping_interval=None,
        open_timeout=5,
    )


def test_an_idle_results_socket_stays_open_and_still_gets_the_next_vote(
    web: stack.WebServer, question: Question, make_user: Any
) -> None:
    cookie = _watcher_cookie("watcher")
    voter = make_user("voter")
    give_phone(voter, unique_number(voter))  # only a verified phone votes
    with _open_results_socket(web, question, cookie) as socket:
        assert 'id="total-votes">0<' in str(socket.recv(timeout=5))

        started = time.monotonic()
        try:
            frame = socket.recv(timeout=IDLE_SECONDS)
        except TimeoutError:
            frame = None  # idle all along, and still open
        except ConnectionClosed as closed:
            pytest.fail(
                f"the server closed an idle socket after {time.monotonic() - started:.1f} s "
                f"({closed})\ndaphne log:\n{web.process.log_tail()}"
            )
        assert frame is None, f"nothing happened, yet the socket received {frame!r}"

        with transaction.atomic():
            vote_cast(user=voter, question=question, choice_id=question.choices.first().pk)
        pushed = str(socket.recv(timeout=5))

    assert 'id="total-votes">1<' in pushed
    log = web.log_text()
    assert not [marker for marker in REDIS_ERRORS if marker in log], log
