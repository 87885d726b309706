"""The web tier's worker (pollstr/web_server.py): websockets without compression, whose
handshake is let go once answered, and that still carry frames both ways afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from uvicorn import Config, Server
from websockets.asyncio.client import connect as async_connect
from websockets.http11 import Request
from websockets.sync.client import connect

from pollstr.web_server import (
    FRESH_CONNECTION_GRACE,
    DrainingServer,
    Inbox,
    LeanWebSocketProtocol,
    UvicornWorker,
    Writable,
)
from tests import stack

# What a browser offers; a server that compresses answers with the same header.
DEFLATE = "Sec-WebSocket-Extensions"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts any websocket and sends each text frame back, upper-cased; answers any HTTP
    request 200 once its body is read."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        while (await receive()).get("more_body"):
            pass
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"answered"})
        return
    while True:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.accept"})
        elif message["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"].upper()})
        else:
            return


# --- the worker as gunicorn runs it ------------------------------------------------------------


@contextmanager
def gunicorn_with_the_worker() -> Iterator[str]:
    port = stack.free_port()
    argv = [
        sys.executable,
        "-m",
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--worker-class",
        "pollstr.web_server.UvicornWorker",
        "--workers",
        "1",
        "--no-control-socket",
        "tests.test_web_server:echo_app",
    ]
    child = stack.ChildProcess("gunicorn-echo", argv, dict(os.environ))
    with stack._running(child):
        url = f"http://127.0.0.1:{port}"
        child.wait_until(lambda: stack.http_answers(url), what=f"HTTP answer on {url}")
        yield f"ws://127.0.0.1:{port}"


@pytest.mark.timeout(60)
def test_gunicorn_s_worker_serves_websockets_without_compression() -> None:
    with (
        gunicorn_with_the_worker() as ws_url,
        connect(
            ws_url + "/ws/anything/", compression="deflate", proxy=None, open_timeout=5
        ) as socket_,
    ):
        # The client offered permessage-deflate; the server did not take it.
        assert socket_.response is not None
        assert DEFLATE not in socket_.response.headers
        for text in ("first", "second" * 1000):
            socket_.send(text)
            assert socket_.recv(timeout=5) == text.upper()


# --- the protocol, in this process ------------------------------------------------------------


@asynccontextmanager
async def serving_in_process() -> AsyncIterator[tuple[str, Server]]:
    """uvicorn with the worker's own configuration, on a free port of this event loop."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    config = Config(app=echo_app, log_config=None, lifespan="off", **UvicornWorker.CONFIG_KWARGS)
    server = Server(config)
    serving = asyncio.ensure_future(server.serve(sockets=[listener]))
    try:
        while not server.started:
            await asyncio.sleep(0.01)
        yield f"ws://127.0.0.1:{port}", server
    finally:
        server.should_exit = True
        await asyncio.wait_for(serving, timeout=10)
        listener.close()


def _open_protocols(server: Server) -> list[LeanWebSocketProtocol]:
    return [p for p in server.server_state.connections if isinstance(p, LeanWebSocketProtocol)]


@pytest.mark.asyncio
async def test_an_open_socket_keeps_nothing_of_its_handshake() -> None:
    async with (
        serving_in_process() as (ws_url, server),
        async_connect(
            ws_url + "/ws/anything/?shown=1", compression="deflate", proxy=None, open_timeout=5
        ) as client,
    ):
        await client.send("hello")
        assert await asyncio.wait_for(client.recv(), timeout=5) == "HELLO"

        [protocol] = _open_protocols(server)
        assert protocol.handshake_dropped
        for name in ("request", "response", "scope"):
            assert not hasattr(protocol, name), name
        # The frame parser was restarted: its suspended frame no longer holds the request.
        parser_locals = protocol.conn.parser.gi_frame.f_locals  # type: ignore[attr-defined]
        assert not [v for v in parser_locals.values() if isinstance(v, Request)]
        assert protocol.conn.extensions == []
        assert client.response is not None
        assert DEFLATE not in client.response.headers

        # Frames still flow both ways on the restarted parser, a large one included, and
        # a burst arrives whole and in order through the protocol's own queue.
        for text in ("again", "x" * 70_000):
            await client.send(text)
            assert await asyncio.wait_for(client.recv(), timeout=5) == text.upper()
        burst = [f"frame {n}" for n in range(50)]
        for text in burst:
            await client.send(text)
        echoed = [await asyncio.wait_for(client.recv(), timeout=5) for _ in burst]
        assert echoed == [text.upper() for text in burst]
        assert isinstance(protocol.queue, Inbox)


# --- the queue and the writable flag that replace asyncio's -----------------------------------


@pytest.mark.asyncio
async def test_the_inbox_hands_events_over_in_order_to_one_waiting_reader() -> None:
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert not reader.done()
    second = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    assert isinstance(second.exception(), RuntimeError)  # one reader at a time

    inbox.put_nowait("first")
    inbox.put_nowait("second")

    assert await asyncio.wait_for(reader, timeout=1) == "first"
    assert not inbox.empty()
    assert await inbox.get() == "second"
    assert inbox.empty()


@pytest.mark.asyncio
async def test_a_cancelled_read_of_the_inbox_leaves_the_next_one_working() -> None:
    inbox = Inbox()
    reader = asyncio.ensure_future(inbox.get())
    await asyncio.sleep(0)
    reader.cancel()
    await asyncio.sleep(0)

    inbox.put_nowait("kept")

    assert await asyncio.wait_for(inbox.get(), timeout=1) == "kept"


@pytest.mark.asyncio
async def test_writable_holds_writers_while_paused_and_releases_them_all() -> None:
    writable = Writable()
    await asyncio.wait_for(writable.wait(), timeout=1)  # writable from the start
    writable.clear()
    writers = [asyncio.ensure_future(writable.wait()) for _ in range(3)]
    await asyncio.sleep(0.01)
    assert not any(writer.done() for writer in writers)

    writable.set()

    await asyncio.wait_for(asyncio.gather(*writers), timeout=1)
    assert writable.is_set()


# --- stopping: what is already on its way is answered -------------------------------------------

# What the proxy sends a replica: a POST on a fresh connection.
VOTE = b"POST /polls/1/vote/ HTTP/1.1\r\nHost: web\r\nContent-Length: 8\r\n\r\nchoice=1"


@asynccontextmanager
async def started(server_class: type[Server]) -> AsyncIterator[tuple[Server, socket.socket]]:
    """A server started on a listening socket as gunicorn's worker starts it, without its
    main loop: the test decides when it stops."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(100)
    config = Config(app=echo_app, log_config=None, lifespan="off", **UvicornWorker.CONFIG_KWARGS)
    config.load()
    server = server_class(config)
    server.lifespan = config.lifespan_class(config)
    await server.startup(sockets=[listener])
    try:
        yield server, listener
    finally:
        listener.close()


def _answer(connection: socket.socket) -> bytes:
    """All the server sent before it closed the connection (b"" when it reset it)."""
    received = b""
    try:
        while chunk := connection.recv(4096):
            received += chunk
    except ConnectionResetError:
        pass
    return received


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_stopping_server_answers_the_connections_waiting_in_its_backlog() -> None:
    async with started(DrainingServer) as (server, listener):
        # Nothing awaits from here to the stop, so the event loop cannot accept: the kernel
        # queues the connection in the listen backlog, as for a worker busy when stopped.
        address = listener.getsockname()
        waiting = socket.create_connection(address, timeout=10)
        waiting.sendall(VOTE)
        await server.shutdown(sockets=[listener])

        with waiting:
            assert _answer(waiting).startswith(b"HTTP/1.1 200")
        with pytest.raises(ConnectionRefusedError):  # and it no longer listens
            socket.create_connection(address, timeout=5)


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_stopping_server_answers_a_connection_that_sends_its_request_just_after() -> None:
    async with started(DrainingServer) as (server, listener):
        silent = socket.create_connection(listener.getsockname(), timeout=10)
        await asyncio.sleep(0.2)  # accepted; its request not written yet
        stopping = asyncio.ensure_future(server.shutdown(sockets=[listener]))
        await asyncio.sleep(0.2)
        assert not stopping.done()
        silent.sendall(VOTE)
        await asyncio.wait_for(stopping, timeout=10)

        with silent:
            assert _answer(silent).startswith(b"HTTP/1.1 200")


@pytest.mark.asyncio
@pytest.mark.timeout(30)
async def test_a_stopping_server_waits_for_a_silent_connection_only_a_moment() -> None:
    async with started(DrainingServer) as (server, listener):
        idle = socket.create_connection(listener.getsockname(), timeout=10)
        await asyncio.sleep(0.2)
        began = time.monotonic()
        await asyncio.wait_for(server.shutdown(sockets=[listener]), timeout=10)

        # The grace, then uvicorn's own 0.1 s; 2 s of slack for a loaded machine.
        assert time.monotonic() - began < FRESH_CONNECTION_GRACE + 2
        with idle:
            assert _answer(idle) == b""  # closed: it never asked for anything
