"""The channel layers (Redis's, and the embedded default's without Redis), and publishing
from sync code.

Channels' in-memory layer keeps asyncio queues bound to the server's event loop. The
embedded Celery worker runs in another thread with its own loop, so its group sends are
handed to the server's loop instead of touching those queues from the wrong thread.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import os
import threading
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import redis
from channels.layers import InMemoryChannelLayer, get_channel_layer
from channels_redis.core import RedisChannelLayer as _ChannelsRedisLayer
from redis.asyncio.retry import Retry as AsyncRetry
from redis.retry import Retry

logger = logging.getLogger(__name__)


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


# --- Redis: one reader for all of a process's channels -------------------------------------


class _Blocking(NamedTuple):
    """A process's synchronous client of one Redis host, with the scripts it runs."""

    client: redis.Redis
    group_send: Any  # redis-py's Script objects: evalsha, loaded again after a restart
    groups_members: Any


class RedisChannelLayer(_ChannelsRedisLayer):
    """channels_redis's layer, its process-local channels read by one reader per process.

    Every websocket's consumer waits in ``receive()`` on a channel of its own for as long as
    it is open. channels_redis makes each such wait hold a queue (four deques) and two tasks
    (its receive lock's and its queue's), kilobytes per idle socket. All of a process's
    channels are one Redis list (``specific.<client prefix>!``), so here one reader task pops
    that list while anyone waits and hands each message to its channel's waiting future; a
    message for a channel nobody waits on is held, at most ``capacity`` of them, oldest
    dropped first (as channels_redis's bounded queue does). A Redis error reaches every
    waiting receive, as it would have reached each of them.

    The reader pops the process's channel with one BZPOPMIN a message. channels_redis
    guards each pop with a backup queue (a cleanup script before it, the message copied to
    ``<channel>$inflight`` after it, a task of its own removing the copy: four commands and
    a task a message) for a consumer cancelled while its pop is in flight; here no
    consumer's cancellation reaches the pop (consumers wait on futures; the reader is
    shared and stops by itself once no receive is waiting), so only the end of the
    process's event loop cancels it, when this process's sockets, the only readers of
    what it pops, are closing too.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._waiting: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._held: dict[str, collections.deque[dict[str, Any]]] = {}
        self._reader: asyncio.Task[None] | None = None
        # (pid, host index → its blocking client and scripts, None for Sentinel).
        self._blocking: tuple[int, dict[int, _Blocking | None]] = (os.getpid(), {})

    async def receive(self, channel: str) -> dict[str, Any]:
        if "!" not in channel:
            return await super().receive(channel)
        assert self.require_valid_channel_name(channel)
        held = self._held.get(channel)
        if held:
            message = held.popleft()
            if not held:
                del self._held[channel]
            return message
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()
        waiting = self._waiting.setdefault(channel, [])
        waiting.append(future)
        try:
            self._reader_start(loop, channel)
            return await future
        except asyncio.CancelledError:
            # Its consumer ended (as channels_redis does, drop what was held for it).
            self._held.pop(channel, None)
            raise
        finally:
            waiting.remove(future)
            if not waiting and self._waiting.get(channel) is waiting:
                del self._waiting[channel]

    def receivers(self) -> int:
        """The receives waiting now (tests)."""
        return sum(len(futures) for futures in self._waiting.values())

    def _reader_start(self, loop: asyncio.AbstractEventLoop, channel: str) -> None:
        reader = self._reader
        if reader is not None and not reader.done() and not reader.get_loop().is_closed():
            if reader.get_loop() is not loop:
                raise RuntimeError(
                    "Two event loops are trying to receive() on one channel layer at once!"
                )
            return
        real_channel = self.non_local_name(channel)
        assert real_channel.endswith(self.client_prefix + "!"), "Wrong client prefix"
        self._reader = loop.create_task(self._read(real_channel))

    async def _read(self, real_channel: str) -> None:
        loop = asyncio.get_running_loop()
        # Until no receive waits: a receive whose message was just handed over counts as
        # not waiting, so the reader does not start another pop for nobody.
        while any(not future.done() for futures in self._waiting.values() for future in futures):
            try:
                target, message = await self.receive_single(real_channel)
            except BaseException as error:
                for futures in list(self._waiting.values()):
                    for future in futures:
                        if future.done() or future.get_loop() is not loop:
                            continue
                        if isinstance(error, asyncio.CancelledError):
                            future.cancel()
                        else:
                            future.set_exception(error)
                if isinstance(error, Exception):
                    return  # the waiters raise; the next receive() starts a new reader
                raise
            for name in target if isinstance(target, list) else [target]:
                self._deliver(name, message)

    async def receive_single(self, channel: str) -> tuple[Any, dict[str, Any]]:
        """(target channel or channels, message): the process's channel by one BZPOPMIN a
        message (see the class), any other as channels_redis receives it."""
        if not channel.endswith("!"):
            return await super().receive_single(channel)
        assert self.require_valid_channel_name(channel, receive=True), "Channel name invalid"
        connection = self.connection(self.consistent_hash(channel))
        key = self.prefix + channel
        popped = None
        while popped is None:
            popped = await connection.bzpopmin(key, timeout=self.brpop_timeout)
            task = asyncio.current_task()
            if popped is None and task is not None and task.cancelling():
                # redis-py lets a blocking pop run out its timeout and returns nothing
                # when cancelled meanwhile: the cancellation is honoured here.
                raise asyncio.CancelledError
        message = self.deserialize(popped[1])
        target = message.pop("__asgi_channel__", channel)
        return target, message

    # --- a socket's groups: one round trip to join them all, one to leave -------------------

    async def group_add(self, group: str, channel: str) -> None:
        await self.groups_add([group], channel)

    async def group_discard(self, group: str, channel: str) -> None:
        await self.groups_discard([group], channel)

    async def groups_add(self, groups: Sequence[str], channel: str) -> None:
        """``channel`` joins every one of ``groups`` (as channels_redis's ``group_add``
        does each: the member added with the time, the group's expiry renewed), in one
        pipeline per Redis host instead of two round trips per group."""
        self.require_valid_channel_name(channel)
        now = time.time()
        for index, some in _by_host(self, _valid_groups(self, groups)).items():
            async with self.connection(index).pipeline(transaction=False) as pipeline:
                for group in some:
                    key = self._group_key(group)
                    pipeline.zadd(key, {channel: now})
                    pipeline.expire(key, self.group_expiry)
                await pipeline.execute()

    async def groups_discard(self, groups: Sequence[str], channel: str) -> None:
        """``channel`` leaves every one of ``groups``, one pipeline per Redis host."""
        self.require_valid_channel_name(channel)
        for index, some in _by_host(self, _valid_groups(self, groups)).items():
            async with self.connection(index).pipeline(transaction=False) as pipeline:
                for group in some:
                    pipeline.zrem(self._group_key(group), channel)
                await pipeline.execute()

    def _deliver(self, channel: str, message: dict[str, Any]) -> None:
        for future in self._waiting.get(channel, ()):
            if not future.done():
                future.set_result(message)
                return
        held = self._held.get(channel)
        if held is None:
            held = self._held[channel] = collections.deque(maxlen=self.get_capacity(channel))
        held.append(message)

    # --- sending from synchronous code, without an event loop --------------------------------

    # channels_redis's group_send stores a message as its own does, in one script per
    # connection: each member channel's expired messages dropped, the message added by
    # time unless the channel is at capacity, the channel's expiry renewed.
    _GROUP_SEND_LUA = """
        local count = #KEYS
        local now, expiry, stale = ARGV[2 * count + 1], ARGV[2 * count + 2], ARGV[2 * count + 3]
        local over_capacity = 0
        for i = 1, count do
            redis.call('ZREMRANGEBYSCORE', KEYS[i], 0, stale)
            if redis.call('ZCOUNT', KEYS[i], '-inf', '+inf') < tonumber(ARGV[count + i]) then
                redis.call('ZADD', KEYS[i], now, ARGV[i])
                redis.call('EXPIRE', KEYS[i], expiry)
            else
                over_capacity = over_capacity + 1
            end
        end
        return over_capacity
    """

    # Each group's members joined at or after ARGV[1], as ZRANGEBYSCORE gives them: one
    # command for all of a host's groups, which costs the client less than a pipeline of
    # one command a group (a publisher asks before every push; docs/ARCHITECTURE.md).
    _GROUPS_MEMBERS_LUA = """
        local found = {}
        for i = 1, #KEYS do
            found[i] = redis.call('ZRANGEBYSCORE', KEYS[i], ARGV[1], '+inf')
        end
        return found
    """

    def blocking_client(self, index: int) -> redis.Redis | None:
        """A synchronous client of host ``index``, one per process (None for a host given
        by Sentinel: that one is reached through channels_redis's own pools only)."""
        held = self._blocking_held(index)
        return held.client if held else None

    def _blocking_held(self, index: int) -> _Blocking | None:
        """The client of host ``index`` in this process, with its scripts."""
        pid, held = self._blocking
        if pid != os.getpid():  # a forked child: clients never cross a fork
            held = {}
            self._blocking = (os.getpid(), held)
        if index not in held:
            host = dict(self.hosts[index])
            if "master_name" in host:
                held[index] = None
                return None
            retry = host.get("retry")
            if isinstance(retry, AsyncRetry):  # the same policy, for a blocking client
                host["retry"] = Retry(retry._backoff, retry._retries, retry._supported_errors)
            address = host.pop("address", None)
            client = redis.Redis.from_url(address, **host) if address else redis.Redis(**host)
            held[index] = _Blocking(
                client,
                group_send=client.register_script(self._GROUP_SEND_LUA),
                groups_members=client.register_script(self._GROUPS_MEMBERS_LUA),
            )
        return held[index]

    def blocking_ready(self) -> bool:
        """Whether every host has a blocking client (else: channels_redis's async path)."""
        return all(self.blocking_client(index) is not None for index in range(self.ring_size))

    def group_send_blocking(
        self, group: str, message: dict[str, Any], *, members: list[str] | None = None
    ) -> None:
        """``group_send`` for a thread without an event loop: the same members (joined
        within group_expiry), the same serialized messages, capacities and expiry, in two
        round trips (the members, then one script per connection) where channels_redis
        makes four, and without a hop to an event loop's thread. ``members``: the group's
        members as ``groups_members_blocking`` read them just before (one script then)."""
        assert self.require_valid_group_name(group), "Group name not valid"
        if members is None:
            members = self._members_now(group)
        if not members:
            return
        now = time.time()
        by_connection, messages, capacities = self._map_channel_keys_to_connection(members, message)
        for index, keys in by_connection.items():
            held = self._blocking_held(index)
            assert held is not None, "blocking_ready() first"
            over_capacity = held.group_send(
                keys=keys,
                args=[
                    *(messages[key] for key in keys),
                    *(capacities[key] for key in keys),
                    now,
                    self.expiry,
                    int(now) - int(self.expiry),
                ],
            )
            if over_capacity:
                logger.info(
                    "%s of %s channels over capacity in group %s",
                    over_capacity,
                    len(members),
                    group,
                )

    def groups_members_blocking(self, groups: list[str]) -> dict[str, list[str]]:
        """{group: its channels} for those of ``groups`` with a member joined within
        group_expiry, in one command per Redis host. Older members are skipped, not
        removed: a group is a sorted set that expires with its last join, and the sends
        that read their members remove them (`_members_now`)."""
        alive_since = time.time() - self.group_expiry
        found: dict[str, list[str]] = {}
        for index, some in _by_host(self, groups).items():
            held = self._blocking_held(index)
            assert held is not None, "blocking_ready() first"
            replies = held.groups_members(
                keys=[self._group_key(group) for group in some], args=[alive_since]
            )
            for group, members in zip(some, replies, strict=True):
                if members:
                    found[group] = [member.decode("utf8") for member in members]
        return found

    def _members_now(self, group: str) -> list[str]:
        """The group's channels joined within group_expiry, older ones removed (as
        channels_redis's group_send does), in one round trip."""
        now = time.time()
        key = self._group_key(group)
        client = self.blocking_client(self.consistent_hash(group))
        assert client is not None, "blocking_ready() first"
        with client.pipeline(transaction=False) as pipeline:
            pipeline.zremrangebyscore(key, min=0, max=int(now) - self.group_expiry)
            pipeline.zrange(key, 0, -1)
            _, members = pipeline.execute()
        return [member.decode("utf8") for member in members]

    def groups_present_blocking(self, groups: list[str]) -> list[str]:
        """Those of ``groups`` with a member joined within group_expiry (see
        `groups_members_blocking`)."""
        found = self.groups_members_blocking(groups)
        return [group for group in groups if group in found]


# --- publishing from synchronous code -------------------------------------------------------

_publisher_lock = threading.Lock()
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
PUBLISH_TIMEOUT = 10.0


def group_send(group: str, message: dict[str, Any], *, members: list[str] | None = None) -> None:
    """Send `message` to `group` from synchronous code (a task, a view, a signal).

    On Redis (`RedisChannelLayer.group_send_blocking`) the send is made in this thread
    with a blocking client kept per process, in two round trips, or one with the
    ``members`` `groups_listening` just read. Any other layer's coroutine runs on one
    long-lived loop per process, in a thread of its own (`async_to_sync` outside a server
    builds an event loop per call, and a Redis layer a connection pool per loop).
    """
    layer = get_channel_layer()
    if layer is None:
        return
    if isinstance(layer, RedisChannelLayer) and layer.blocking_ready():
        layer.group_send_blocking(group, message, members=members)
        return
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _loop())
    future.result(timeout=PUBLISH_TIMEOUT)


def groups_listening(groups: list[str]) -> list[tuple[str, list[str] | None]]:
    """(group, its members) for those of `groups` that have members now, in one round trip
    to Redis; members None where the layer does not list them (`group_send` then finds
    them itself). Passing them on to `group_send` spares it reading them again: a socket
    that joins in between gets the state its own first frame reads after joining, which
    is at least this one (the publisher committed it before asking)."""
    layer = get_channel_layer()
    if isinstance(layer, RedisChannelLayer) and layer.blocking_ready():
        found = layer.groups_members_blocking(groups)
        return [(group, found[group]) for group in groups if group in found]
    return [(group, None) for group in groups_present(groups)]


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
    if isinstance(layer, RedisChannelLayer) and layer.blocking_ready():
        return layer.groups_present_blocking(groups)
    if not all(hasattr(layer, name) for name in ("_group_key", "connection", "consistent_hash")):
        return list(groups)
    future = asyncio.run_coroutine_threadsafe(_redis_groups_present(layer, groups), _loop())
    return list(future.result(timeout=PUBLISH_TIMEOUT))


async def _redis_groups_present(layer: Any, groups: list[str]) -> list[str]:
    alive_since = time.time() - layer.group_expiry
    present: set[str] = set()
    for index, some in _by_host(layer, groups).items():
        pipeline = layer.connection(index).pipeline(transaction=False)
        for group in some:
            pipeline.zcount(layer._group_key(group), alive_since, "+inf")
        counts = await pipeline.execute()
        present.update(group for group, count in zip(some, counts, strict=True) if count)
    return [group for group in groups if group in present]


def _valid_groups(layer: Any, groups: Sequence[str]) -> Sequence[str]:
    for group in groups:
        layer.require_valid_group_name(group)  # raises TypeError (not an assert: -O keeps it)
    return groups


async def groups_add(layer: Any, groups: Sequence[str], channel: str) -> None:
    """``channel`` joins ``groups``: in one round trip on Redis, one by one elsewhere."""
    if isinstance(layer, RedisChannelLayer):
        await layer.groups_add(groups, channel)
        return
    for group in groups:
        await layer.group_add(group, channel)


async def groups_discard(layer: Any, groups: Sequence[str], channel: str) -> None:
    """``channel`` leaves ``groups`` (see `groups_add`)."""
    if isinstance(layer, RedisChannelLayer):
        await layer.groups_discard(groups, channel)
        return
    for group in groups:
        await layer.group_discard(group, channel)


def _by_host(layer: Any, groups: Sequence[str]) -> dict[int, list[str]]:
    """``groups`` by the index of the Redis host that keeps each (channels_redis's hash)."""
    by_host: dict[int, list[str]] = {}
    for group in groups:
        by_host.setdefault(layer.consistent_hash(group), []).append(group)
    return by_host


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
