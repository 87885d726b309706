"""The web tier's worker (pollstr/web_server.py): websockets without compression, whose
handshake is let go once answered, and that still carry frames both ways afterwards."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import pytest
from uvicorn import Config, Server
from websockets.asyncio.client import connect as async_connect
from websockets.http11 import Request
from websockets.sync.client import connect

from pollstr.web_server import Inbox, LeanWebSocketProtocol, UvicornWorker, Writable
from tests import stack

# What a browser offers; a server that compresses answers with the same header.
DEFLATE = "Sec-WebSocket-Extensions"


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Accepts any websocket and sends each text frame back, upper-cased."""
    if scope["type"] == "lifespan":
        await receive()  # startup
        await send({"type": "lifespan.startup.complete"})
        await receive()  # shutdown
        await send({"type": "lifespan.shutdown.complete"})
        return
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
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
