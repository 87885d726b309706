"""HTTP through one worker thread per request (pollstr/http_bridge.py), spoken to as an
ASGI server speaks to it: the request body in, the response out, big bodies streamed,
the WSGI application's ``close()`` (Django's ``request_finished``) run in its thread."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterable
from typing import Any

import pytest

from pollstr.http_bridge import BUFFERED_BYTES, Admission, ThreadedHTTP


def _scope(method: str = "GET", path: str = "/", headers: list[tuple[bytes, bytes]] | None = None):
    return {
        "type": "http",
        "method": method,
        "path": path,
        "root_path": "",
        "query_string": b"a=1",
        "http_version": "1.1",
        "scheme": "http",
        "server": ("127.0.0.1", 8000),
        "client": ("127.0.0.2", 5000),
        "headers": headers or [(b"host", b"testserver")],
    }


def _serve(app: ThreadedHTTP, scope: dict[str, Any], body: bytes = b"") -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []
    chunks = [body[:3], body[3:]]

    async def receive() -> dict[str, Any]:
        chunk = chunks.pop(0)
        return {"type": "http.request", "body": chunk, "more_body": bool(chunks)}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(app(scope, receive, send))
    return sent


class Recorder:
    """A WSGI application that records what it was given and where it ran."""

    def __init__(self, body: Iterable[bytes] = (b"hello",)) -> None:
        self.body = body
        self.environ: dict[str, Any] = {}
        self.threads: dict[str, str] = {}

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        self.environ = environ
        self.environ["read"] = environ["wsgi.input"].read()
        self.threads["call"] = threading.current_thread().name
        start_response("201 Created", [("Content-Type", "text/plain"), ("X-One", "1")])
        recorder = self

        class Result:
            def __iter__(self) -> Any:
                return iter(recorder.body)

            def close(self) -> None:
                recorder.threads["close"] = threading.current_thread().name

        return Result()


def test_a_request_runs_in_a_worker_thread_and_its_response_goes_out_in_one_piece():
    app = Recorder()
    sent = _serve(ThreadedHTTP(app, threads=2), _scope("POST", "/x/"), body=b"a=1&b=2")

    assert sent[0] == {
        "type": "http.response.start",
        "status": 201,
        "headers": [(b"content-type", b"text/plain"), (b"x-one", b"1")],
    }
    assert sent[1] == {"type": "http.response.body", "body": b"hello"}
    assert len(sent) == 2
    assert app.environ["read"] == b"a=1&b=2"
    assert app.environ["REQUEST_METHOD"] == "POST"
    assert app.environ["PATH_INFO"] == "/x/"
    assert app.environ["QUERY_STRING"] == "a=1"
    assert app.environ["REMOTE_ADDR"] == "127.0.0.2"
    assert app.environ["HTTP_HOST"] == "testserver"
    # Django's request_finished (connections back to the pool) runs where the request ran.
    assert app.threads["call"].startswith("http")
    assert app.threads["close"] == app.threads["call"]


def test_a_big_response_is_streamed_chunk_by_chunk():
    piece = b"x" * (64 * 1024)
    count = BUFFERED_BYTES // len(piece) + 3
    app = Recorder(body=[piece] * count)
    sent = _serve(ThreadedHTTP(app, threads=1), _scope())

    assert sent[0]["type"] == "http.response.start"
    bodies = [m for m in sent if m["type"] == "http.response.body"]
    assert b"".join(m["body"] for m in bodies) == piece * count
    assert all(m.get("more_body") for m in bodies[:-1])
    assert bodies[-1] == {"type": "http.response.body", "body": b""}
    assert len(bodies) > 2
    assert "close" in app.threads


def test_too_many_duplicate_headers_get_a_400_not_a_crash():
    app = Recorder()
    headers = [(b"host", b"testserver")] + [(b"x-dup", b"1")] * 200
    sent = _serve(ThreadedHTTP(app, threads=1), _scope(headers=headers))

    assert sent[0]["status"] == 400
    assert b"duplicate headers" in sent[1]["body"]
    assert app.environ == {}  # the application never saw it


def test_a_client_gone_before_its_body_arrived_runs_nothing():
    app = Recorder()
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    asyncio.run(ThreadedHTTP(app, threads=1)(_scope("POST"), receive, send))
    assert sent == []
    assert app.environ == {}


def test_django_answers_through_the_bridge(db):
    from django.core.wsgi import get_wsgi_application

    sent = _serve(ThreadedHTTP(get_wsgi_application(), threads=1), _scope(path="/healthz"))
    assert sent[0]["status"] == 200
    sent = _serve(ThreadedHTTP(get_wsgi_application(), threads=1), _scope(path="/accounts/login/"))
    assert sent[0]["status"] == 200
    assert b'name="csrfmiddlewaretoken"' in sent[1]["body"]


# --- admission: how many requests run at once ---------------------------------------------


class Held:
    """A WSGI application whose requests run until the test lets them go, counting how
    many run at once (in the bridge's real threads)."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0
        self.started: list[float] = []

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Iterable[bytes]:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
            self.started.append(time.monotonic())
        self.release.wait(10)
        with self.lock:
            self.running -= 1
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"done"]


def _fire(app: ThreadedHTTP, count: int, *, release_after: float) -> tuple[float, list[Any]]:
    """``count`` requests at once; the held application lets them go after
    ``release_after`` seconds. Returns when they were fired and what each was sent."""

    async def one() -> list[dict[str, Any]]:
        sent: list[dict[str, Any]] = []

        async def receive() -> dict[str, Any]:
            return {"type": "http.request", "body": b"", "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            sent.append(message)

        await app(_scope(), receive, send)
        return sent

    async def main() -> tuple[float, list[Any]]:
        fired = time.monotonic()
        held = app.wsgi_application
        loop = asyncio.get_running_loop()
        loop.call_later(release_after, held.release.set)  # type: ignore[attr-defined]
        return fired, await asyncio.gather(*(one() for _ in range(count)))

    return asyncio.run(main())


def test_busy_requests_run_steady_at_a_time_and_all_are_answered():
    """Requests that finish within the patience never open the rest of the pool."""
    held = Held()
    app = ThreadedHTTP(held, threads=4, steady=2, patience=5.0)

    _, answers = _fire(app, 6, release_after=0.3)

    assert held.most == 2
    assert [sent[0]["status"] for sent in answers] == [200] * 6
    assert app.admission.running == 0


def test_stuck_requests_open_the_rest_of_the_pool_after_the_patience():
    """Two requests stuck (a locked table): the third and fourth start once they have
    waited the patience, while the stuck ones still hold their threads; a fifth waits."""
    held = Held()
    app = ThreadedHTTP(held, threads=4, steady=2, patience=0.2)

    fired, answers = _fire(app, 5, release_after=1.0)

    assert held.most == 4  # the third and fourth ran beside the stuck two, never a fifth
    starts = sorted(start - fired for start in held.started)
    assert starts[2] >= 0.2  # not before the patience
    assert [sent[0]["status"] for sent in answers] == [200] * 5
    assert app.admission.running == 0


def test_a_request_cancelled_while_waiting_gives_its_place_on():
    async def main() -> tuple[int, int]:
        admission = Admission(steady=1, threads=1, patience=10.0)
        await admission.enter()  # the one running
        waiting = asyncio.ensure_future(admission.enter())
        behind = asyncio.ensure_future(admission.enter())
        await asyncio.sleep(0)
        waiting.cancel()  # its client left
        admission.leave()
        await asyncio.wait_for(behind, 1)  # let in, in the place the cancelled one left
        running_then = admission.running
        admission.leave()
        return running_then, admission.running

    assert asyncio.run(main()) == (1, 0)


def test_steady_is_between_one_and_the_threads():
    with pytest.raises(ValueError, match="steady"):
        Admission(steady=3, threads=2, patience=0.05)
