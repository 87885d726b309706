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
  drops its references and restarts the parser on a fresh, empty buffer.

Nothing here imports Django: gunicorn's master loads this module to find the worker class.
"""

from __future__ import annotations

from typing import Any

from uvicorn.protocols.websockets.websockets_sansio_impl import WebSocketsSansIOProtocol
from uvicorn_worker import UvicornWorker as BaseUvicornWorker
from websockets.protocol import OPEN
from websockets.streams import StreamReader


class LeanWebSocketProtocol(WebSocketsSansIOProtocol):
    """uvicorn's websockets (sans-I/O) protocol, letting the handshake go once answered."""

    handshake_dropped = False

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
            conn.parser = conn.parse()  # open: straight to frames
            next(conn.parser)


class UvicornWorker(BaseUvicornWorker):
    """uvicorn_worker's worker with LeanWebSocketProtocol for websockets, uncompressed."""

    CONFIG_KWARGS: dict[str, Any] = {
        **BaseUvicornWorker.CONFIG_KWARGS,
        "ws": LeanWebSocketProtocol,
        "ws_per_message_deflate": False,
    }
