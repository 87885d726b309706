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
    real_render = live.render_fragment
    monkeypatch.setattr(
        live, "render_fragment", lambda *a, **kw: rendered.append(kw) or real_render(*a, **kw)
    )

    verification_publish(verification_id=verification.pk)
    assert rendered == []

    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(verification_group(verification.pk), channel)
    verification_publish(verification_id=verification.pk)
    assert len(rendered) == 1


@pytest.mark.django_db
def test_a_transition_publishes_the_state_it_committed_without_reading_the_row_again(user):
    """The publisher shows the row as the transition committed it and the trail up to
    its event, not whatever is stored by the time it renders; its version is that
    event's id (a socket drops anything older than what it showed)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from two_factor.models import Status, Verification, VerificationEvent

    verification = create_verification(user=user, status=Status.SENT, channel="sms")
    event = VerificationEvent.objects.create(
        verification=verification, from_status=Status.SENDING, to_status=Status.SENT
    )
    as_committed = Verification.objects.get(pk=verification.pk)
    # Meanwhile another process moved it on and recorded that.
    Verification.objects.filter(pk=verification.pk).update(status=Status.CHECKING)
    VerificationEvent.objects.create(
        verification=verification, from_status=Status.SENT, to_status=Status.CHECKING
    )
    layer = get_channel_layer()
    channel = async_to_sync(layer.new_channel)()
    async_to_sync(layer.group_add)(verification_group(verification.pk), channel)

    with CaptureQueriesContext(connection) as queries:
        verification_publish(
            verification_id=verification.pk, as_of=live.Committed(as_committed, event_id=event.pk)
        )

    assert len(queries) == 1, [q["sql"] for q in queries]
    assert "two_factor_verificationevent" in queries[0]["sql"]
    pushed = async_to_sync(layer.receive)(channel)
    assert pushed["version"] == event.pk
    assert 'data-status="sent"' in pushed["html"]

    verification_publish(verification_id=verification.pk)  # as stored now
    pushed = async_to_sync(layer.receive)(channel)
    assert pushed["version"] > event.pk
    assert 'data-status="checking"' in pushed["html"]
