"""Django's HTTP side served in one thread hop per request.

Every Pollstr view is synchronous (the provider is called by Celery, never inside a
request). Under Django's own ASGI handler a request still crosses between the event
loop and worker threads many times: each middleware that can run both ways is entered
through ``sync_to_async``, the innermost handler hops back to the loop, and the view
hops out again. Under P2's load that plumbing was about a third of the web tier's CPU
(benchmarks/RESULTS.md, flame-web.svg).

``ThreadedHTTP`` hands the whole request to Django's WSGI handler in one thread of a
bounded pool, exactly as a threaded WSGI server would, and writes the response from the
event loop. The middleware, views, signals (``request_started``/``request_finished``,
which hand database connections back to the pool) and responses are Django's own.
Websockets stay on Channels.

- Responses up to ``BUFFERED_BYTES`` (every page and fragment) are sent in one go.
  Larger or streaming ones (static files) are written chunk by chunk, each chunk handed
  to the loop and awaited, so memory stays bounded and a slow client slows only its own
  thread.
- The pool has ``WEB_HTTP_THREADS`` threads (4), never more than a process has database
  connections (``DATABASE_POOL_MAX_SIZE``; the settings refuse more): a thread never
  waits for a connection another request of the same process holds longer than the
  pool's own timeout allows.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from tempfile import SpooledTemporaryFile
from typing import Any

from asgiref.wsgi import WsgiToAsgiInstance

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]

# A request body above this spills to a temporary file (as asgiref's adapter does).
SPOOL_BYTES = 64 * 1024
# A response up to this size is collected in the thread and sent in one go.
BUFFERED_BYTES = 256 * 1024


class ThreadedHTTP:
    """ASGI ``http`` → a WSGI application, one worker thread per request."""

    def __init__(self, wsgi_application: WSGIApp, *, threads: int) -> None:
        self.wsgi_application = wsgi_application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            raise ValueError(f"ThreadedHTTP serves HTTP only, not {scope['type']!r}")
        loop = asyncio.get_running_loop()
        with SpooledTemporaryFile(max_size=SPOOL_BYTES) as body:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return  # the client left before sending its whole request
                body.write(message.get("body", b""))
                if not message.get("more_body"):
                    break
            body.seek(0)
            request = _Request(self.wsgi_application, scope, body, loop, send)
            start, chunks = await loop.run_in_executor(self.executor, request.run)
        if start is not None:  # buffered: the thread already closed the response
            await send(start)
            await send({"type": "http.response.body", "body": b"".join(chunks)})


class _Request:
    """One request in its worker thread: environ in, status/headers/body out."""

    def __init__(
        self,
        app: WSGIApp,
        scope: Scope,
        body: Any,
        loop: asyncio.AbstractEventLoop,
        send: Send,
    ) -> None:
        self.app = app
        self.scope = scope
        self.body = body
        self.loop = loop
        self.send = send
        self.start: Message | None = None

    def run(self) -> tuple[Message | None, list[bytes]]:
        try:
            environ = _environ(self.scope, self.body)
        except ValueError:  # a header repeated past asgiref's limit
            return _BAD_REQUEST, [b"Bad Request: too many duplicate headers"]
        result = self.app(environ, self._start_response)
        try:
            chunks: list[bytes] = []
            size = 0
            iterator = iter(result)
            for chunk in iterator:
                chunks.append(chunk)
                size += len(chunk)
                if size > BUFFERED_BYTES:
                    self._stream(chunks, iterator)
                    return None, []
            return self._started(), chunks
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()  # request_finished: connections go back to the pool, here

    def _start_response(
        self, status: str, headers: list[tuple[str, str]], exc_info: Any = None
    ) -> None:
        self.start = {
            "type": "http.response.start",
            "status": int(status.split(" ", 1)[0]),
            "headers": [
                (name.lower().encode("latin1"), value.encode("latin1")) for name, value in headers
            ],
        }

    def _started(self) -> Message:
        if self.start is None:
            raise RuntimeError("the WSGI application returned without calling start_response")
        return self.start

    def _stream(self, first: list[bytes], rest: Iterable[bytes]) -> None:
        self._on_loop(self._started())
        self._on_loop({"type": "http.response.body", "body": b"".join(first), "more_body": True})
        for chunk in rest:
            if chunk:
                self._on_loop({"type": "http.response.body", "body": chunk, "more_body": True})
        self._on_loop({"type": "http.response.body", "body": b""})

    def _on_loop(self, message: Message) -> None:
        async def send() -> None:
            await self.send(message)

        asyncio.run_coroutine_threadsafe(send(), self.loop).result()


_BAD_REQUEST: Message = {
    "type": "http.response.start",
    "status": 400,
    "headers": [(b"content-type", b"text/plain; charset=utf-8")],
}


def _environ(scope: Scope, body: Any) -> dict[str, Any]:
    """The WSGI environ of an ASGI scope (asgiref's translation, header limits included)."""
    translator = WsgiToAsgiInstance(None)
    translator.scope = scope
    environ: dict[str, Any] = translator.build_environ(scope, body)
    environ["wsgi.errors"] = sys.stderr
    return environ
