"""A socket's groups joined and left together (pollstr.channel_layers.groups_add /
groups_discard): on a real Redis, what channels_redis's group_add stores for each group
(the member with the time, the group's expiry renewed), in one pipeline; elsewhere (the
embedded layer) one group at a time."""

from __future__ import annotations

import os
import time
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import InMemoryChannelLayer

from pollstr.channel_layers import RedisChannelLayer, groups_add, groups_discard

pytestmark = pytest.mark.redis

URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")


@pytest.fixture
def layer():
    made = RedisChannelLayer(
        hosts=[{"address": URL}], prefix=f"pollstr-test-groups-{uuid.uuid4().hex}"
    )
    yield made
    async_to_sync(made.flush)()


def test_a_channel_joins_every_group_as_channels_redis_would_have_added_it(layer):
    channel = async_to_sync(layer.new_channel)()
    before = time.time()

    async_to_sync(groups_add)(layer, ["user-1", "verification-2"], channel)

    client = layer.blocking_client(0)
    assert client is not None
    for group in ("user-1", "verification-2"):
        key = layer._group_key(group)
        assert before - 1 <= client.zscore(key, channel) <= time.time() + 1
        assert 0 < client.ttl(key) <= layer.group_expiry
    # What joined is what group_send reaches: channels_redis's own sends, both groups.
    async_to_sync(layer.group_send)("user-1", {"type": "a"})
    async_to_sync(layer.group_send)("verification-2", {"type": "b"})
    assert async_to_sync(layer.receive)(channel) == {"type": "a"}
    assert async_to_sync(layer.receive)(channel) == {"type": "b"}


def test_a_channel_leaves_every_group_and_the_others_stay(layer):
    channel, other = async_to_sync(layer.new_channel)(), async_to_sync(layer.new_channel)()
    async_to_sync(groups_add)(layer, ["g1", "g2"], channel)
    async_to_sync(layer.group_add)("g1", other)  # one group, through the same pipeline

    async_to_sync(groups_discard)(layer, ["g1", "g2"], channel)

    client = layer.blocking_client(0)
    assert client is not None
    assert client.zrange(layer._group_key("g1"), 0, -1) == [other.encode()]
    assert client.zcard(layer._group_key("g2")) == 0
    assert layer.groups_present_blocking(["g1", "g2"]) == ["g1"]


def test_a_bad_group_name_is_refused_before_anything_is_joined(layer):
    channel = async_to_sync(layer.new_channel)()

    with pytest.raises(TypeError):
        async_to_sync(groups_add)(layer, ["fine", "not fine!"], channel)

    assert layer.groups_present_blocking(["fine"]) == []


def test_the_embedded_layer_joins_and_leaves_one_group_at_a_time():
    layer = InMemoryChannelLayer()

    async def joined_then_left() -> tuple[set[str], set[str]]:
        channel = await layer.new_channel()
        await groups_add(layer, ["a", "b"], channel)
        joined = {group for group, members in layer.groups.items() if channel in members}
        await groups_discard(layer, ["a", "b"], channel)
        left = {group for group, members in layer.groups.items() if channel in members}
        return joined, left

    assert async_to_sync(joined_then_left)() == ({"a", "b"}, set())
