"""The channel layer of the embedded default (no Redis), and publishing from sync code.

Channels' in-memory layer keeps asyncio queues bound to the server's event loop. The
embedded Celery worker runs in another thread with its own loop, so its group sends are
handed to the server's loop instead of touching those queues from the wrong thread.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from typing import Any

from channels.layers import InMemoryChannelLayer, get_channel_layer


class EmbeddedChannelLayer(InMemoryChannelLayer):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._home_loop: asyncio.AbstractEventLoop | None = None

    async def receive(self, channel: str) -> dict[str, Any]:
        self._home_loop = asyncio.get_running_loop()
        return await super().receive(channel)

    async def group_send(self, group: str, message: dict[str, Any]) -> None:
        home = self._home_loop
        if home is None or home.is_closed() or home is asyncio.get_running_loop():
            await super().group_send(group, message)
            return
        parent_send = super().group_send
        future = asyncio.run_coroutine_threadsafe(parent_send(group, message), home)
        await asyncio.wrap_future(future)


# --- publishing from synchronous code -------------------------------------------------------

_publisher_lock = threading.Lock()
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
PUBLISH_TIMEOUT = 10.0


def group_send(group: str, message: dict[str, Any]) -> None:
    """Send `message` to `group` from synchronous code (a task, a view, a signal).

    `async_to_sync` outside a server builds an event loop per call, and the Redis layer a
    connection pool per loop: a worker paid a new loop and a new Redis connection for
    every publish. One long-lived loop per process, in a thread of its own, keeps them.
    """
    layer = get_channel_layer()
    if layer is None:
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _loop())
    future.result(timeout=PUBLISH_TIMEOUT)


def groups_present(groups: list[str]) -> list[str]:
    """Those of `groups` that have members now (all of them when the layer can't tell), in
    one round trip to Redis: the per-language groups of one page tell a publisher which
    languages to render (pollstr/languages.py), and whether to render at all (most
    verifications have no page open while their worker sends). A group's members expire
    with the layer's group_expiry, so a language whose pages are gone stops being rendered
    by itself. channels_redis keeps a group as a sorted set of channels by join time (its
    `_group_key`/`connection`, pinned in requirements.txt); the in-memory layers keep a
    dict."""
    layer = get_channel_layer()
    if layer is None:
        return []
    held = getattr(layer, "groups", None)
    if isinstance(held, dict):
        return [group for group in groups if held.get(group)]
    if not all(hasattr(layer, name) for name in ("_group_key", "connection", "consistent_hash")):
        return list(groups)
    future = asyncio.run_coroutine_threadsafe(_redis_groups_present(layer, groups), _loop())
    return list(future.result(timeout=PUBLISH_TIMEOUT))


async def _redis_groups_present(layer: Any, groups: list[str]) -> list[str]:
    alive_since = time.time() - layer.group_expiry
    by_connection: dict[int, list[str]] = {}
    for group in groups:
        by_connection.setdefault(layer.consistent_hash(group), []).append(group)
    present: set[str] = set()
    for index, some in by_connection.items():
        pipeline = layer.connection(index).pipeline(transaction=False)
        for group in some:
            pipeline.zcount(layer._group_key(group), alive_since, "+inf")
        counts = await pipeline.execute()
        present.update(group for group, count in zip(some, counts, strict=True) if count)
    return [group for group in groups if group in present]


def _loop() -> asyncio.AbstractEventLoop:
    global _publisher
    pid = os.getpid()
    held = _publisher
    if held is not None and held[0] == pid and held[1].is_running():
        return held[1]
    with _publisher_lock:
        held = _publisher
        if held is not None and held[0] == pid and held[1].is_running():
            return held[1]
        # A new process (a forked pool child) gets its own: a loop never crosses a fork.
        loop = asyncio.new_event_loop()
        started = threading.Event()

        def run() -> None:
            asyncio.set_event_loop(loop)
            loop.call_soon(started.set)
            loop.run_forever()

        threading.Thread(target=run, name="channel-publisher", daemon=True).start()
        started.wait(5)
        _publisher = (pid, loop)
        return loop
