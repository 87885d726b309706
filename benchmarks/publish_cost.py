"""CPU of one status push on the Redis channel layer, its publish and its receive.

Publishing, from synchronous code
(what every transition does while a page is open: ask which languages' groups have
members, then send the rendering to the group), through channels_redis's coroutines on
the publisher's event loop thread, through the layer's blocking client
(``pollstr.channel_layers.RedisChannelLayer.group_send_blocking``) asked for the members
again, and through it given the members the question read (what the publishers do,
``pollstr.channel_layers.groups_listening``: one round trip less). Interleaved,
repetition by repetition, in one run, against the local Redis:

    python -m benchmarks.publish_cost [--publishes 2000] [--repetitions 5]

The figure is this process's own CPU counter over the publishes (every thread's: the
event loop's included), per publish; one member channel is in the group (of three
languages' groups asked), its capacity high enough that no send is refused, its queue
emptied between repetitions.

Receiving, by a process's reader (``RedisChannelLayer.receive_single`` on the process's
channel, what every socket's messages come through): channels_redis's own pop (a cleanup
script, BZPOPMIN, a copy to the backup queue, a task that removes it) and the layer's
(one BZPOPMIN). The messages are queued beforehand; the figure is the CPU of popping and
decoding them, the removal tasks awaited, per message.

Joining and leaving, by a socket (its user's group and its verification's, at connect and
at close): channels_redis's ``group_add`` / ``group_discard`` one group at a time (two
round trips a join, one a leave) and the layer's ``groups_add`` / ``groups_discard``
(one pipeline each); CPU per socket, both groups joined and left.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.stats import medians_lines

MESSAGE_BYTES = 3000  # about a status fragment's size


def per_publish(publish: Callable[[], Any], publishes: int) -> float:
    """CPU milliseconds per call of ``publish`` (after a warm-up)."""
    for _ in range(20):
        publish()
    started = time.process_time()
    for _ in range(publishes):
        publish()
    return (time.process_time() - started) * 1000 / publishes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--publishes", type=int, default=2000)
    parser.add_argument("--repetitions", type=int, default=5)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/12")
    args = parser.parse_args(argv)

    from pollstr.channel_layers import PUBLISH_TIMEOUT, RedisChannelLayer, _loop

    layer = RedisChannelLayer(
        hosts=[args.redis_url],
        prefix=f"pollstr-bench-publish-{uuid.uuid4().hex}",
        capacity=10 * args.publishes,
    )
    member = f"bench-page-{uuid.uuid4().hex}"  # another process's socket: read by nobody
    group = "verification-bench"
    groups = [f"{group}.{code}" for code in ("en", "fr", "es")]
    message = {"type": "verification.changed", "html": "x" * MESSAGE_BYTES, "version": 1}

    def on_loop(coroutine: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, _loop()).result(PUBLISH_TIMEOUT)

    on_loop(layer.group_add(groups[0], member))

    def through_the_loop() -> None:
        from pollstr.channel_layers import _redis_groups_present

        for present in on_loop(_redis_groups_present(layer, groups)):
            on_loop(layer.group_send(present, message))

    def blocking() -> None:
        for present in layer.groups_present_blocking(groups):
            layer.group_send_blocking(present, message)

    def members_passed_on() -> None:
        for present, members in layer.groups_members_blocking(groups).items():
            layer.group_send_blocking(present, message, members=members)

    modes: dict[str, Callable[[], None]] = {
        "channels_redis on the publisher's loop thread": through_the_loop,
        "blocking client (group_send_blocking)": blocking,
        "blocking client, the members read once (groups_listening)": members_passed_on,
    }
    client = layer.blocking_client(0)
    assert client is not None
    results: dict[str, list[float]] = {name: [] for name in modes}
    print(f"load average before: {Path('/proc/loadavg').read_text().strip()}")
    try:
        for _ in range(args.repetitions):
            for name, publish in modes.items():
                client.delete(layer.prefix + member)
                results[name].append(per_publish(publish, args.publishes))
        received = _receive_costs(layer, message, args.publishes, args.repetitions)
        joined = _membership_costs(layer, args.publishes, args.repetitions)
    finally:
        on_loop(layer.flush())
    print(f"load average after: {Path('/proc/loadavg').read_text().strip()}")
    print("CPU per publish (members asked, then one group sent), median of the repetitions:")
    print("\n".join(medians_lines(results, unit="ms", digits=3)))
    print("CPU per message received by a process's reader, median of the repetitions:")
    print("\n".join(medians_lines(received, unit="ms", digits=3)))
    print("CPU per socket, its two groups joined and left, median of the repetitions:")
    print("\n".join(medians_lines(joined, unit="ms", digits=3)))


def _receive_costs(
    layer: Any, message: dict[str, Any], messages: int, repetitions: int
) -> dict[str, list[float]]:
    from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

    modes = {
        "channels_redis's pop (backup queue)": ChannelsRedisLayer.receive_single,
        "the layer's pop (one BZPOPMIN)": type(layer).receive_single,
    }
    results: dict[str, list[float]] = {name: [] for name in modes}

    async def run(pop: Any) -> float:
        channel = await layer.new_channel()
        process_channel = layer.non_local_name(channel)
        for _ in range(messages):
            await layer.send(channel, message)
        started = time.process_time()
        for _ in range(messages):
            await pop(layer, process_channel)
        await asyncio.gather(*layer.receive_cleaners)
        return (time.process_time() - started) * 1000 / messages

    for _ in range(repetitions):
        for name, pop in modes.items():
            results[name].append(asyncio.run(run(pop)))
    return results


def _membership_costs(layer: Any, sockets: int, repetitions: int) -> dict[str, list[float]]:
    from channels_redis.core import RedisChannelLayer as ChannelsRedisLayer

    from pollstr.channel_layers import groups_add, groups_discard

    groups = ["user-sockets-1", f"verification-{uuid.uuid4().hex}.en"]

    async def one_at_a_time(channel: str) -> None:
        for group in groups:
            await ChannelsRedisLayer.group_add(layer, group, channel)
        for group in groups:
            await ChannelsRedisLayer.group_discard(layer, group, channel)

    async def together(channel: str) -> None:
        await groups_add(layer, groups, channel)
        await groups_discard(layer, groups, channel)

    modes = {
        "channels_redis, a group at a time": one_at_a_time,
        "the layer's groups_add / groups_discard": together,
    }
    results: dict[str, list[float]] = {name: [] for name in modes}

    async def run(socket: Any) -> float:
        channel = await layer.new_channel()
        for _ in range(20):
            await socket(channel)
        started = time.process_time()
        for _ in range(sockets):
            await socket(channel)
        return (time.process_time() - started) * 1000 / sockets

    for _ in range(repetitions):
        for name, socket in modes.items():
            results[name].append(asyncio.run(run(socket)))
    return results


if __name__ == "__main__":
    main()
