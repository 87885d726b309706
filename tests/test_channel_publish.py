"""Publishing from synchronous code: one loop per process, and nothing rendered or sent
for a group nobody is in."""

from __future__ import annotations

import os
import uuid

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from pollstr.channel_layers import group_send, groups_present
from tests.two_factor.verifications import create_verification
from two_factor import live
from two_factor.live import verification_group, verification_publish


@pytest.fixture
def redis_layer(settings):
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings.CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [url], "prefix": f"pollstr-test-publish-{uuid.uuid4().hex}"},
        }
    }
    from channels.layers import channel_layers

    channel_layers.backends.clear()  # the next get_channel_layer() builds from settings
    yield get_channel_layer()
    channel_layers.backends.clear()


@pytest.mark.redis
def test_the_redis_layer_counts_a_groups_members(redis_layer):
    group = "publish-test-group"
    channel = async_to_sync(redis_layer.new_channel)()
    assert groups_present([group]) == []

    async_to_sync(redis_layer.group_add)(group, channel)
    assert groups_present([group]) == [group]

    group_send(group, {"type": "hello"})
    assert async_to_sync(redis_layer.receive)(channel) == {"type": "hello"}

    async_to_sync(redis_layer.group_discard)(group, channel)
    assert groups_present([group]) == []


def test_the_in_process_layer_counts_a_groups_members():
    layer = get_channel_layer()
    group = f"publish-{uuid.uuid4().hex}"
    channel = async_to_sync(layer.new_channel)()
    assert groups_present([group]) == []
    async_to_sync(layer.group_add)(group, channel)
    assert groups_present([group]) == [group]


@pytest.mark.django_db
def test_a_status_nobody_watches_is_neither_rendered_nor_sent(monkeypatch, user):
    verification = create_verification(user=user, status="sent")
    rendered: list[object] = []
    monkeypatch.setattr(live, "verification_render", lambda **kw: rendered.append(kw) or "")

    verification_publish(verification_id=verification.pk)
    assert rendered == []

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(verification_group(verification.pk), channel)
    verification_publish(verification_id=verification.pk)
    assert len(rendered) == 1
