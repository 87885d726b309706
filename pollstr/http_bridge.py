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
- The pool has as many threads as a process has database connections
  (``DATABASE_POOL_MAX_SIZE``): a thread never waits for a connection another request
  of the same process holds longer than the pool's own timeout allows.
- ``Admission`` decides when a request gets a thread. ``steady`` requests run at once
  (requests are short and CPU-bound: more threads than cores only contend for the
  interpreter); the rest of the pool opens only to a request that has waited
  ``patience`` seconds, that is when the running ones are stuck (a locked table holds
  each for the statement timeout) rather than busy.
"""

from __future__ import annotations

import asyncio
import sys
from collections import deque
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


class Admission:
    """How many requests of a process run at once: up to ``steady`` whenever there is
    room, up to ``threads`` for a request that has waited ``patience`` seconds. Waiting
    requests are let in first come, first served; one of the event loop's objects (not
    thread-safe: entered and left on the loop only)."""

    def __init__(self, *, steady: int, threads: int, patience: float) -> None:
        if not 1 <= steady <= threads:
            raise ValueError(f"steady ({steady}) must be between 1 and threads ({threads})")
        self.steady = steady
        self.threads = threads
        self.patience = patience
        self.running = 0
        self._queue: deque[tuple[asyncio.Future[None], float]] = deque()

    async def enter(self) -> None:
        if self.running < self.steady and not self._queue:
            self.running += 1
            return
        loop = asyncio.get_running_loop()
        admitted: asyncio.Future[None] = loop.create_future()
        self._queue.append((admitted, loop.time()))
        # Only needed if every steady place is still taken by then: _admit() checks.
        timer = loop.call_later(self.patience, self._admit)
        try:
            await admitted
        except asyncio.CancelledError:
            if admitted.done() and not admitted.cancelled():
                self.leave()  # let in and cancelled at once: the place goes on
            raise
        finally:
            timer.cancel()

    def leave(self) -> None:
        self.running -= 1
        self._admit()

    def _admit(self) -> None:
        now = asyncio.get_running_loop().time()
        while self._queue:
            admitted, since = self._queue[0]
            if admitted.done():  # cancelled while waiting (the client left)
                self._queue.popleft()
                continue
            # A millisecond's slack: the loop may run the patience's timer a hair early,
            # and a waiter it does not let in would wait for the next request to end.
            waited = now - since >= self.patience - 0.001
            room = self.threads if waited else self.steady
            if self.running >= room:
                return
            self._queue.popleft()
            self.running += 1
            admitted.set_result(None)


class ThreadedHTTP:
    """ASGI ``http`` → a WSGI application, one worker thread per request."""

    def __init__(
        self,
        wsgi_application: WSGIApp,
        *,
        threads: int,
        steady: int | None = None,
        patience: float = 0.05,
    ) -> None:
        self.wsgi_application = wsgi_application
        self.executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="http")
        self.admission = Admission(
            steady=threads if steady is None else steady,
            threads=threads,
            patience=patience,
        )

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
            await self.admission.enter()
            try:
                start, chunks = await loop.run_in_executor(self.executor, request.run)
            finally:
                self.admission.leave()
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
