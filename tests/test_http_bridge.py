"""HTTP through one worker thread per request (pollstr/http_bridge.py), spoken to as an
ASGI server speaks to it: the request body in, the response out, big bodies streamed,
the WSGI application's ``close()`` (Django's ``request_finished``) run in its thread."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from pollstr.http_bridge import BUFFERED_BYTES, ThreadedHTTP


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
