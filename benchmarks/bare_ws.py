"""The reference for P4: a bare asyncio websocket server (the ``websockets`` package)
that, when any client sends ``push``, sends one fixed HTML fragment to every connected
socket. No Django, no channel layer: what fan-out costs with nothing on top.

    python -m benchmarks.bare_ws --port 8765 --fragment-bytes 900
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, broadcast, serve


def fragment(size: int) -> str:
    """An HTML fragment of exactly ``size`` bytes (ASCII), shaped like a results list."""
    head = '<section id="results" hx-swap-oob="true"><ol>'
    tail = "</ol></section>"
    row = '<li class="choice">Latency <meter value="1"></meter> 1 vote</li>'
    body = (row * (size // len(row) + 1))[: max(0, size - len(head) - len(tail))]
    return (head + body + tail)[:size] if size >= len(head) + len(tail) else "x" * size


async def main(port: int, size: int) -> None:
    clients: set[ServerConnection] = set()
    html = fragment(size)

    async def handler(connection: ServerConnection) -> None:
        clients.add(connection)
        try:
            async for message in connection:
                if message == "push":
                    broadcast(clients, html)
        finally:
            clients.discard(connection)

    stop = asyncio.get_running_loop().create_future()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set_result, None)
    async with serve(handler, "127.0.0.1", port, ping_interval=None, max_queue=None):
        print("listening", flush=True)
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--fragment-bytes", type=int, default=900)
    args = parser.parse_args()
    asyncio.run(main(args.port, args.fragment_bytes))
