"""One channel-layer subscription per process for a big group; the fan-out in memory.

A poll's results page may be open in thousands of browsers. With a channel per socket in
the group, every vote made the channel layer queue one message per socket in Redis and
the web process drain them one by one. Here a process joins such a group once, through a
relay channel of its own, and hands each message to its local sockets itself: one Redis
message per process per change, whatever the number of sockets.

Messages for a relayed group carry the group's name (``"group"``), so one relay channel
serves every group its process watches. A membership in the layer expires
(``group_expiry``, a day with channels_redis): the relay renews its memberships while
it has listeners.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

Listener = Callable[[dict[str, Any]], Awaitable[None]]
# Renew a relayed group's membership this often (well inside any group expiry).
RENEW_SECONDS = 3600.0


class Relay:
    """The relay of one event loop (one server process): its channel, its listeners."""

    def __init__(self) -> None:
        self._listeners: dict[str, dict[int, Listener]] = {}
        self._channel: str | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._lock = asyncio.Lock()

    async def join(self, group: str, key: int, listener: Listener) -> None:
        layer = get_channel_layer()
        assert layer is not None
        async with self._lock:
            if self._channel is None:
                # The layer's default prefix: channels_redis reads all of a process's
                # own channels through one queue, and only that prefix's.
                self._channel = await layer.new_channel()
                self._tasks = [
                    asyncio.ensure_future(self._relay(layer, self._channel)),
                    asyncio.ensure_future(self._renew(layer, self._channel)),
                ]
            listeners = self._listeners.setdefault(group, {})
            if not listeners:
                await layer.group_add(group, self._channel)
            listeners[key] = listener

    async def leave(self, group: str, key: int) -> None:
        layer = get_channel_layer()
        assert layer is not None
        async with self._lock:
            listeners = self._listeners.get(group)
            if listeners is None or listeners.pop(key, None) is None or listeners:
                return
            del self._listeners[group]
            if self._channel is not None:
                await layer.group_discard(group, self._channel)

    def listeners(self, group: str) -> int:
        return len(self._listeners.get(group, ()))

    async def _renew(self, layer: Any, channel: str) -> None:
        """Memberships expire in the layer; a relay with listeners stays a member."""
        while True:
            await asyncio.sleep(RENEW_SECONDS)
            for group in list(self._listeners):
                try:
                    await layer.group_add(group, channel)
                except Exception:
                    logger.warning("Relay could not renew %s", group, exc_info=True)

    async def _relay(self, layer: Any, channel: str) -> None:
        while True:
            try:
                message = await layer.receive(channel)
            except asyncio.CancelledError:
                raise
            except Exception:
                # The layer is down (a Redis restart): try again shortly, as consumers do.
                logger.warning("Relay could not receive; retrying", exc_info=True)
                await asyncio.sleep(1.0)
                continue
            group = message.get("group")
            for listener in list(self._listeners.get(str(group), {}).values()):
                try:
                    await listener(message)
                except Exception:
                    logger.exception("A socket failed to take a relayed message")


_relays: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Relay] = weakref.WeakKeyDictionary()


def relay() -> Relay:
    """This event loop's relay (one per server process; tests get one per loop)."""
    loop = asyncio.get_running_loop()
    found = _relays.get(loop)
    if found is None:
        found = _relays[loop] = Relay()
    return found
