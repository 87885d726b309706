"""The Redis channel layer's receive (pollstr.channel_layers.RedisChannelLayer): one reader
per process for all of its channels, not a queue and two tasks per waiting socket."""

from __future__ import annotations

import asyncio
import os
import uuid

import pytest
import pytest_asyncio

from pollstr.channel_layers import RedisChannelLayer

pytestmark = [pytest.mark.redis, pytest.mark.asyncio]


@pytest_asyncio.fixture
async def layer():
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    made = RedisChannelLayer(hosts=[url], prefix=f"pollstr-test-receive-{uuid.uuid4().hex}")
    yield made
    await made.flush()
    await made.close_pools()


def _tasks_beyond(waiting: list[asyncio.Task]) -> list[asyncio.Task]:
    mine = set(waiting) | {asyncio.current_task()}
    return [task for task in asyncio.all_tasks() if task not in mine]


async def test_many_waiting_receives_share_one_reader(layer):
    channels = [await layer.new_channel() for _ in range(50)]
    before = set(asyncio.all_tasks())
    waiting = [asyncio.ensure_future(layer.receive(channel)) for channel in channels]
    await asyncio.sleep(0.2)

    assert layer.receivers() == 50
    # channels_redis's own receive keeps two more tasks per waiting receive.
    assert len([task for task in _tasks_beyond(waiting) if task not in before]) == 1

    for index in (7, 0, 49):
        await layer.send(channels[index], {"type": "hello", "n": index})
    for index in (7, 0, 49):
        assert await asyncio.wait_for(waiting[index], 5) == {"type": "hello", "n": index}
    assert layer.receivers() == 47
    for task in waiting:
        task.cancel()
    await asyncio.gather(*waiting, return_exceptions=True)
    assert layer.receivers() == 0


async def test_a_message_that_arrives_while_nobody_waits_is_held_in_order(layer):
    busy, idle = await layer.new_channel(), await layer.new_channel()
    # The reader runs for busy's receive and pops idle's messages meanwhile.
    receiving = asyncio.ensure_future(layer.receive(busy))
    await asyncio.sleep(0.1)
    await layer.send(idle, {"type": "first"})
    await layer.send(idle, {"type": "second"})
    await asyncio.sleep(0.3)
    await layer.send(busy, {"type": "busy"})
    assert await asyncio.wait_for(receiving, 5) == {"type": "busy"}

    assert await asyncio.wait_for(layer.receive(idle), 5) == {"type": "first"}
    assert await asyncio.wait_for(layer.receive(idle), 5) == {"type": "second"}


async def test_a_group_message_reaches_each_member_channel(layer):
    one, two = await layer.new_channel(), await layer.new_channel()
    await layer.group_add("watchers", one)
    await layer.group_add("watchers", two)
    receives = [asyncio.ensure_future(layer.receive(c)) for c in (one, two)]
    await asyncio.sleep(0.1)

    await layer.group_send("watchers", {"type": "changed"})

    assert await asyncio.wait_for(asyncio.gather(*receives), 5) == [{"type": "changed"}] * 2


async def test_a_redis_error_reaches_every_waiting_receive_and_the_next_receive_works(
    layer, monkeypatch
):
    one, two = await layer.new_channel(), await layer.new_channel()
    real = layer.receive_single
    failures = [ConnectionError("Redis went away")]

    async def failing_once(channel):
        if failures:
            await asyncio.sleep(0.1)
            raise failures.pop()
        return await real(channel)

    monkeypatch.setattr(layer, "receive_single", failing_once)
    receives = [asyncio.ensure_future(layer.receive(c)) for c in (one, two)]

    results = await asyncio.wait_for(asyncio.gather(*receives, return_exceptions=True), 5)
    assert [type(result) for result in results] == [ConnectionError, ConnectionError]
    assert layer.receivers() == 0

    again = asyncio.ensure_future(layer.receive(one))
    await asyncio.sleep(0.1)
    await layer.send(one, {"type": "back"})
    assert await asyncio.wait_for(again, 5) == {"type": "back"}


async def test_a_receive_cancelled_with_messages_held_drops_them(layer):
    """Its consumer ended: what was held for its channel goes too (as in channels_redis)."""
    channel = await layer.new_channel()
    receiving = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.1)
    layer._deliver(channel, {"type": "taken"})  # completes the waiting receive's future
    layer._deliver(channel, {"type": "held"})  # nobody waits now: held
    receiving.cancel()  # before the receive resumes

    with pytest.raises(asyncio.CancelledError):
        await receiving
    assert channel not in layer._held


async def test_the_reader_pops_each_message_once_in_order_without_a_backup_queue(layer):
    """One BZPOPMIN a message: nothing copied to channels_redis's `$inflight` queue, and
    what was sent, to one channel or through a group, arrives once and in order."""
    channel = await layer.new_channel()
    await layer.group_add("ordered", channel)
    for number in range(5):
        await layer.send(channel, {"type": "n", "n": number})
    await layer.group_send("ordered", {"type": "n", "n": 5})

    received = [await asyncio.wait_for(layer.receive(channel), 5) for _ in range(6)]

    assert [message["n"] for message in received] == list(range(6))
    connection = layer.connection(0)
    assert await connection.keys(f"{layer.prefix}*$inflight") == []
    assert await connection.zcard(layer.prefix + layer.non_local_name(channel)) == 0
    pending = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.2)
    assert not pending.done()  # nothing left to deliver twice
    pending.cancel()


async def test_the_reader_stops_once_nobody_waits_and_a_cancelled_pop_ends_it(layer):
    layer.brpop_timeout = 1
    channel = await layer.new_channel()
    first = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.1)
    await layer.send(channel, {"type": "one"})
    assert await asyncio.wait_for(first, 5) == {"type": "one"}
    reader = layer._reader
    assert reader is not None
    await asyncio.wait_for(reader, 5)  # nobody waits: it stopped, no pop left for nobody

    second = asyncio.ensure_future(layer.receive(channel))
    await asyncio.sleep(0.1)
    reader = layer._reader
    assert reader is not None
    assert not reader.done()
    reader.cancel()  # as the event loop's end does, while the pop blocks in Redis
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(reader, 3)
    with pytest.raises(asyncio.CancelledError):
        await second
