"""CPU of a code page's websocket in the web process: opening it (the gate, the consumer's
access check and its first frame) and closing it, and each status push it relays, in
this process, through the real ASGI application (``pollstr.asgi``: the gate, the
consumer, the Redis channel layer) against a fresh database on the local PostgreSQL and
the local Redis:

    .venv/bin/python -m benchmarks.socket_cost [--sockets 200] [--pushes 2000] [--repetitions 5]

``flow_cost`` leaves the socket out; a verified flow opens one and relays about five
pushes (a transition's rendering, sent to the page's group). The push is sent as a
transition's publish sends it (``pollstr.channel_layers.group_send``, from this thread,
of a rendered fragment with its version) and timed until the socket has handed it to
the client; the publisher's own CPU is in the figure too, the same in every run. To
compare two commits, run this in each, alternating (benchmarks/README.md, "Comparing
two commits").
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import time
from typing import TYPE_CHECKING

from benchmarks import infra

if TYPE_CHECKING:
    from benchmarks.fixtures import Voter

FRAGMENT = "x" * 3000  # about a status fragment's size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sockets", type=int, default=200, help="opened and closed per repetition")
    parser.add_argument("--pushes", type=int, default=2000, help="relayed per repetition")
    parser.add_argument("--repetitions", type=int, default=5)
    infra.in_process_main(parser, lambda args: asyncio.run(_run(args)))


async def _run(args: argparse.Namespace) -> None:
    from asgiref.sync import sync_to_async
    from channels.testing import WebsocketCommunicator

    from pollstr.asgi import application
    from pollstr.channel_layers import group_send
    from two_factor.live import verification_group

    voters = await sync_to_async(_voters)(args.sockets + 1)
    version = 10**6

    async def open_socket(voter: Voter, verification_id: str) -> WebsocketCommunicator:
        headers = [
            (b"cookie", f"sessionid={voter.session_key}; csrftoken={'c' * 32}".encode()),
            (b"origin", b"http://localhost"),
            (b"host", b"localhost"),
        ]
        socket = WebsocketCommunicator(application, f"/ws/2fa/{verification_id}/", headers)
        connected, code = await socket.connect(timeout=10)
        assert connected, f"the socket was refused ({code})"
        await socket.receive_from(timeout=10)  # the first frame
        return socket

    async def sockets_cost() -> float:
        started = time.process_time()
        for voter, verification_id in voters[1:]:
            socket = await open_socket(voter, verification_id)
            await socket.disconnect(timeout=10)
        return (time.process_time() - started) / args.sockets

    async def pushes_cost(socket: WebsocketCommunicator, group: str) -> float:
        nonlocal version
        started = time.process_time()
        for _ in range(args.pushes):
            version += 1
            message = {"type": "verification.changed", "html": FRAGMENT, "version": version}
            group_send(group, message)  # blocking, two round trips: as a publish
            await socket.receive_from(timeout=10)
        return (time.process_time() - started) / args.pushes

    listener, listened = voters[0]
    socket = await open_socket(listener, listened)
    group = verification_group(listened, "en")
    await sockets_cost()  # warm-up: pools, templates, the layer's reader
    await pushes_cost(socket, group)
    opened, pushed = [], []
    for _ in range(args.repetitions):
        opened.append(await sockets_cost())
        pushed.append(await pushes_cost(socket, group))
    await socket.disconnect(timeout=10)
    print(f"load average {os.getloadavg()[0]:.2f}")
    for name, values in (("open + first frame + close", opened), ("push relayed", pushed)):
        shown = ", ".join(f"{1000 * v:.3f}" for v in values)
        print(f"{name:28s} {1000 * statistics.median(values):7.3f} ms CPU  ({shown})")


def _voters(count: int) -> list[tuple[Voter, str]]:
    from benchmarks import fixtures

    accounts = fixtures.voters_create(count, tag="socketcost")
    voters = fixtures.sessions_create(accounts, verified=False)
    fixtures.phones_create(voters)
    verification_ids = fixtures.verifications_create(voters, status="sent")
    return list(zip(voters, verification_ids, strict=True))


if __name__ == "__main__":
    main()
