"""The channel layer of the embedded default (no Redis).

Channels' in-memory layer keeps asyncio queues bound to the server's event loop. The
embedded Celery worker runs in another thread with its own loop, so its group sends are
handed to the server's loop instead of touching those queues from the wrong thread.
"""

from __future__ import annotations

import asyncio
from typing import Any

from channels.layers import InMemoryChannelLayer


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
