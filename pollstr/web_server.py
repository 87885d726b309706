"""The web tier's gunicorn worker: uvicorn's (uvloop, httptools), with a websocket protocol
that keeps little per open socket.

A results page holds its socket open for as long as it is shown, and one web process
holds thousands of them (benchmarks, P4: RSS per socket). What an idle socket costs is
mostly what the server keeps for it, so this worker's websocket protocol:

- **does not compress** (no permessage-deflate): a deflate context costs each socket tens
  of kilobytes for as long as it is open, while our frames are small HTML fragments sent
  rarely;
- **lets the handshake go** once it is answered: uvicorn's protocol keeps the upgrade
  request, the 101 response and the scope it built from them, and the websockets parser
  keeps the request in its suspended frame; none of them is read again, so the protocol
  drops its references and restarts the parser on a fresh, empty buffer;
- **queues with a list, not an asyncio.Queue**: uvicorn's queue of events for the
  application and its "writable" event are five deques between them (about 3.5 KB per
  socket, mostly empty blocks); a list and a waiting future do what uvicorn asks of them.

Nothing here imports Django: gunicorn's master loads this module to find the worker class.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker as BaseUvicornWorker
from websockets.protocol import OPEN, Protocol
from websockets.streams import StreamReader


class Inbox:
    """The events waiting for the application: what uvicorn uses of an asyncio.Queue
    (``put_nowait``, ``get``, ``empty``) for one reader at a time, as an ASGI application
    calls ``receive``."""

    __slots__ = ("_events", "_reader")

    def __init__(self) -> None:
        self._events: list[Any] = []
        self._reader: asyncio.Future[None] | None = None

    def put_nowait(self, event: Any) -> None:
        self._events.append(event)
        if self._reader is not None and not self._reader.done():
            self._reader.set_result(None)

    def empty(self) -> bool:
        return not self._events

    async def get(self) -> Any:
        while not self._events:
            if self._reader is not None:
                raise RuntimeError("receive() is already being awaited")
            self._reader = asyncio.get_running_loop().create_future()
            try:
                await self._reader
            finally:
                self._reader = None
        return self._events.pop(0)


class Writable:
    """Whether the transport takes more data: what uvicorn uses of an asyncio.Event
    (``set``, ``clear``, ``wait``), its waiters in a list made only while paused."""

    __slots__ = ("_set", "_waiters")

    def __init__(self) -> None:
        self._set = True
        self._waiters: list[asyncio.Future[None]] | None = None

    def is_set(self) -> bool:
        return self._set

    def set(self) -> None:
        self._set = True
        waiters, self._waiters = self._waiters, None
        for waiter in waiters or ():
            if not waiter.done():
                waiter.set_result(None)

    def clear(self) -> None:
        self._set = False

    async def wait(self) -> None:
        if self._set:
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        try:
            await waiter
        finally:
            if self._waiters is not None and waiter in self._waiters:
                self._waiters.remove(waiter)


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, letting the handshake go once answered."""

    handshake_dropped = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.queue = Inbox()  # type: ignore[assignment]
        self.writable = Writable()  # type: ignore[assignment]

    async def send(self, message: Any) -> None:
        await super().send(message)
        if self.handshake_complete and not self.handshake_dropped:
            self.drop_handshake()

    def drop_handshake(self) -> None:
        """Forget the upgrade request, the response and the scope (the application has its
        own reference to the scope for as long as it needs it), and restart the frame
        parser, which still holds the request in its suspended frame."""
        self.handshake_dropped = True
        for name in ("request", "response", "scope"):
            self.__dict__.pop(name, None)
        conn = self.conn
        # Only between frames: with nothing buffered the old parser holds no partial frame.
        if conn.state is OPEN and conn.parser_exc is None and not conn.reader.buffer:
            conn.reader = StreamReader()
            conn.parser = Protocol.parse(conn)  # the frames' parser, without the handshake's
            next(conn.parser)


class UvicornWorker(BaseUvicornWorker):
    """uvicorn_worker's worker with LeanWebSocketProtocol for websockets, uncompressed."""

    CONFIG_KWARGS: dict[str, Any] = {
        **BaseUvicornWorker.CONFIG_KWARGS,
        "ws": LeanWebSocketProtocol,
        "ws_per_message_deflate": False,
    }
