"""Sending to a group from synchronous code on Redis (RedisChannelLayer.group_send_blocking):
what channels_redis's own group_send stores, received by its own receive, on a real Redis;
the members that expired are skipped, a full channel is left alone, and the publisher's
helpers (pollstr.channel_layers.group_send/groups_present) take this path on Redis."""

from __future__ import annotations

import logging
import os
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry

from pollstr import channel_layers
from pollstr.channel_layers import RedisChannelLayer

pytestmark = pytest.mark.redis

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


def _layer(**config: object) -> RedisChannelLayer:
    host = {
        "address": URL,
        "socket_timeout": 10,
        # As the settings give it: the async client's policy, copied for the blocking one.
        "retry": AsyncRetry(
            ExponentialWithJitterBackoff(base=0.1, cap=0.5), 1, (RedisConnectionError,)
        ),
    }
    return RedisChannelLayer(
        hosts=[host], prefix=f"pollstr-test-blocking-{uuid.uuid4().hex}", **config
    )


@pytest.fixture
def layer():
    made = _layer()
    yield made
    async_to_sync(made.flush)()


def _receive(layer: RedisChannelLayer, channel: str) -> dict:
    return async_to_sync(layer.receive)(channel)


def test_a_member_receives_what_channels_redis_itself_would_have_sent(layer):
    group = "blocking-group"
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(group, channel)
    message = {"type": "verification.changed", "html": "<p>é</p>" * 100, "version": 7}

    layer.group_send_blocking(group, message)
    async_to_sync(layer.group_send)(group, message)  # channels_redis's own, for comparison

    assert _receive(layer, channel) == message
    assert _receive(layer, channel) == message


def test_every_member_gets_it_once_and_a_group_nobody_is_in_costs_no_message(layer):
    channels = [async_to_sync(layer.new_channel)() for _ in range(3)]
    for channel in channels:
        async_to_sync(layer.group_add)("many", channel)
    # A channel of another process (no "!"): its own key, with its own copy.
    elsewhere = "elsewhere-" + uuid.uuid4().hex
    async_to_sync(layer.group_add)("many", elsewhere)

    layer.group_send_blocking("many", {"type": "hello", "n": 1})
    layer.group_send_blocking("nobody-here", {"type": "hello", "n": 2})

    for channel in [*channels, elsewhere]:
        assert _receive(layer, channel) == {"type": "hello", "n": 1}
    client = layer.blocking_client(0)
    assert client is not None
    assert client.keys(f"{layer.prefix}*nobody*") == []


def test_a_member_that_joined_longer_ago_than_group_expiry_is_dropped(layer):
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("old", channel)
    client = layer.blocking_client(0)
    assert client is not None
    key = layer._group_key("old")
    client.zadd(key, {channel: int(time.time()) - layer.group_expiry - 5})
    # Asked who listens, it is no one (skipped, not yet removed).
    assert layer.groups_members_blocking(["old"]) == {}

    layer.group_send_blocking("old", {"type": "hello"})

    assert client.zcard(key) == 0  # dropped from the group, as channels_redis does
    assert layer.groups_present_blocking(["old"]) == []


def test_a_channel_at_capacity_is_left_alone_and_it_is_logged(caplog):
    layer = _layer(capacity=2)
    try:
        group = "full"
        # Another process's channel: nobody reads it here, so its messages stay queued.
        member = "full-member-" + uuid.uuid4().hex
        async_to_sync(layer.group_add)(group, member)
        with caplog.at_level(logging.INFO, logger="pollstr.channel_layers"):
            for number in range(4):
                layer.group_send_blocking(group, {"type": "n", "n": number})

        client = layer.blocking_client(0)
        assert client is not None
        queued = client.zrange(layer.prefix + member, 0, -1)
        assert [layer.deserialize(message)["n"] for message in queued] == [0, 1]
        assert "2 of 1 channels over capacity in group full" not in caplog.text
        assert caplog.text.count("1 of 1 channels over capacity in group full") == 2
    finally:
        async_to_sync(layer.flush)()


def test_the_blocking_client_keeps_the_configured_retry_policy(layer):
    client = layer.blocking_client(0)
    assert client is not None
    retry = client.get_retry()
    assert isinstance(retry, Retry)
    assert retry._retries == 1
    assert RedisConnectionError in retry._supported_errors
    assert client is layer.blocking_client(0)  # one per process


def test_the_publishers_helpers_take_the_blocking_path_on_redis(settings, monkeypatch):
    from channels.layers import channel_layers as layers

    prefix = f"pollstr-test-blocking-{uuid.uuid4().hex}"
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "pollstr.channel_layers.RedisChannelLayer",
            "CONFIG": {"hosts": [URL], "prefix": prefix},
        }
    }
    layers.backends.clear()
    try:
        layer = get_channel_layer()
        assert isinstance(layer, RedisChannelLayer)
        # No hop to the publisher's event loop thread: it would fail the send.
        monkeypatch.setattr(channel_layers, "_loop", lambda: pytest.fail("an event loop hop"))
        channel = async_to_sync(layer.new_channel)()
        assert channel_layers.groups_present(["helpers.en", "helpers.fr"]) == []
        async_to_sync(layer.group_add)("helpers.fr", channel)

        assert channel_layers.groups_present(["helpers.en", "helpers.fr"]) == ["helpers.fr"]
        channel_layers.group_send("helpers.fr", {"type": "hello"})
        assert _receive(layer, channel) == {"type": "hello"}
        # Who listens, with the members: the send then takes them as they are.
        listening = channel_layers.groups_listening(["helpers.en", "helpers.fr"])
        assert listening == [("helpers.fr", [channel])]
        channel_layers.group_send("helpers.fr", {"type": "again"}, members=listening[0][1])
        assert _receive(layer, channel) == {"type": "again"}
        async_to_sync(layer.flush)()
    finally:
        layers.backends.clear()


def test_a_send_given_the_members_just_read_does_not_read_them_again(layer, monkeypatch):
    """A publisher asks who listens (the members, one round trip) and sends to them: the
    send is then its one script, not a second read of the group."""
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("listened", channel)
    found = layer.groups_members_blocking(["listened", "nobody-here"])
    assert found == {"listened": [channel]}
    reads: list[str] = []
    monkeypatch.setattr(layer, "_members_now", lambda group: reads.append(group))
    message = {"type": "verification.changed", "html": "<p>sent</p>", "version": 3}

    layer.group_send_blocking("listened", message, members=found["listened"])

    assert reads == []
    assert _receive(layer, channel) == message


def test_a_forked_child_makes_its_own_client(layer):
    parents = layer.blocking_client(0)
    pid, held = layer._blocking
    layer._blocking = (pid - 1, held)  # what a child inherits: its parent's clients

    childs = layer.blocking_client(0)

    assert childs is not None
    assert childs is not parents
    assert layer._blocking[0] == os.getpid()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("after-fork", channel)
    layer.group_send_blocking("after-fork", {"type": "hello"})
    assert _receive(layer, channel) == {"type": "hello"}


def test_who_listens_to_several_groups_is_one_command(layer, monkeypatch):
    """A publisher asks before every push which of a verification's per-language groups
    have pages open: one script for all of them, members as ZRANGEBYSCORE gives them (a
    member older than group_expiry skipped)."""
    live, stale = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)("g.en", live)
    async_to_sync(layer.group_add)("g.fr", stale)
    client = layer.blocking_client(0)
    assert client is not None
    client.zadd(layer._group_key("g.fr"), {stale: int(time.time()) - layer.group_expiry - 5})
    commands: list[object] = []
    execute = client.execute_command

    def counted(*args, **kwargs):
        commands.append(args[0])
        return execute(*args, **kwargs)

    monkeypatch.setattr(client, "execute_command", counted)
    assert layer.groups_members_blocking(["g.en", "g.fr", "g.es"]) == {"g.en": [live]}
    assert commands == ["EVALSHA"]
