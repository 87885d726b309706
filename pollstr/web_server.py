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

And it **stops without dropping a request already on its way** (``DrainingServer``): the
proxy opens a fresh connection per request, so when a replica is stopped some requests are
already connected, but not yet read. uvicorn would reset them, and the proxy may not pass
a POST on once it was sent: the voter would see a 502.

Nothing here imports Django: gunicorn's master loads this module to find the worker class.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

from gunicorn.arbiter import Arbiter
from uvicorn import Server
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


# How long a connection that has sent nothing yet is given, once the server stops, to send
# its request: the proxy writes it right after connecting, so this is a bound, not a wait
# (an idle connection, a browser's preconnect say, is closed after it).
FRESH_CONNECTION_GRACE = 1.0


class DrainingServer(Server):
    """uvicorn's server, whose shutdown first serves what is already on its way.

    uvicorn stops by closing its listening sockets, which resets every connection the
    kernel had accepted for it but the server had not taken yet (the listen backlog), then
    closes every connection that has not sent a whole request yet. Here it:

    1. keeps a duplicate of each listening socket while it stops accepting, then takes in
       the connections waiting in the backlog and serves them (a connection arriving after
       the last ``accept`` and before the close is still reset: the window is the few
       microseconds between the two calls, not the whole backlog);
    2. gives the connections that have not sent their request yet up to
       ``FRESH_CONNECTION_GRACE`` to send it, then stops as uvicorn does (a request under
       way is answered, with ``Connection: close``).
    """

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        listeners = [sock.dup() for sock in sockets or []]
        for server in self.servers:
            server.close()
        self.servers = []
        for sock in sockets or []:
            sock.close()
        for listener in listeners:
            with listener:
                await self._take_in(listener)
        await self._hear_fresh_connections()
        await super().shutdown(sockets=None)

    async def _take_in(self, listener: socket.socket) -> None:
        """Serve the connections waiting in a closed server's listen backlog."""
        loop = asyncio.get_running_loop()
        listener.setblocking(False)
        while True:
            try:
                connection, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # e.g. the connection reset while it waited: nothing to serve
                continue
            await loop.connect_accepted_socket(self._protocol, connection)

    def _protocol(self) -> asyncio.Protocol:
        """What uvicorn's ``startup`` builds for each accepted connection."""
        config = self.config
        return config.http_protocol_class(  # type: ignore[call-arg]
            config=config, server_state=self.server_state, app_state=self.lifespan.state
        )

    async def _hear_fresh_connections(self) -> None:
        """Wait, up to FRESH_CONNECTION_GRACE and not on a forced exit, until every HTTP
        connection has sent a request's headers (uvicorn's protocols start a request cycle
        then; a websocket's protocol has none)."""
        loop = asyncio.get_running_loop()
        until = loop.time() + FRESH_CONNECTION_GRACE
        while (
            loop.time() < until
            and not self.force_exit
            and any(
                getattr(connection, "cycle", False) is None
                for connection in self.server_state.connections
            )
        ):
            await asyncio.sleep(0.01)


class UvicornWorker(BaseUvicornWorker):
    """uvicorn_worker's worker with LeanWebSocketProtocol for websockets, uncompressed,
    that stops as DrainingServer does."""

    CONFIG_KWARGS: dict[str, Any] = {
        **BaseUvicornWorker.CONFIG_KWARGS,
        "ws": LeanWebSocketProtocol,
        "ws_per_message_deflate": False,
    }

    async def _serve(self) -> None:
        # uvicorn_worker's, with DrainingServer for uvicorn's Server.
        self.config.app = self.wsgi
        server = DrainingServer(config=self.config)
        self._install_sigquit_handler()
        await server.serve(sockets=self.sockets)
        if not server.started:
            sys.exit(Arbiter.WORKER_BOOT_ERROR)
