"""The embedded default's channel layer carries a send from the worker thread's own
event loop to a consumer waiting on the server's loop (what `make run` relies on).

asyncio queues are not thread-safe: the layer must put every message on the queue from
the server loop's own thread, whichever thread sent it.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from pollstr.channel_layers import EmbeddedChannelLayer

pytestmark = pytest.mark.asyncio


def _record_queue_threads(layer: EmbeddedChannelLayer) -> list[int]:
    threads: list[int] = []
    original = layer.send

    async def send(channel: str, message: dict[str, Any]) -> None:
        threads.append(threading.get_ident())
        await original(channel, message)

    layer.send = send  # type: ignore[method-assign]
    return threads


async def test_a_group_send_from_another_threads_loop_is_delivered_on_the_server_loop():
    layer = EmbeddedChannelLayer()
    queue_threads = _record_queue_threads(layer)
    channel = await layer.new_channel()
    await layer.group_add("verification-x", channel)
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0)  # the receive makes this loop the layer's home

    def worker_thread() -> None:
        # As the embedded Celery worker publishes: its own loop, via async_to_sync/run.
        asyncio.run(layer.group_send("verification-x", {"type": "verification.changed"}))

    thread = threading.Thread(target=worker_thread)
    thread.start()
    message = await asyncio.wait_for(receiving, timeout=5)
    await asyncio.to_thread(thread.join, 5)

    assert message == {"type": "verification.changed"}
    assert queue_threads == [threading.get_ident()]
    assert not thread.is_alive()


async def test_a_send_on_the_home_loop_works_as_in_memory():
    layer = EmbeddedChannelLayer()
    channel = await layer.new_channel()
    await layer.group_add("g", channel)
    await layer.group_send("g", {"type": "x"})
    assert await asyncio.wait_for(layer.receive(channel), timeout=1) == {"type": "x"}
