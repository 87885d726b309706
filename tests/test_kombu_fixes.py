"""pollstr.kombu_fixes: closing a Redis channel after Celery detached its transport, and
one Redis client per channel and pool instead of one per message.

That is what a worker does when the broker connection drops (Connection.collect(), then
close()) while it holds unacknowledged messages; unpatched kombu 5.7 raises
AttributeError there and the worker exits (tests/faults/test_redis_restart.py runs the
whole story with a real worker and a real Redis restart).
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest
import redis
from kombu import Connection

from pollstr import kombu_fixes
from tests import stack

pytestmark = pytest.mark.redis


@pytest.fixture
def broker() -> Iterator[tuple[str, str]]:
    url = stack.redis_url_for_tests()
    if not stack.redis_ping(url):
        pytest.skip(f"needs Redis at TEST_REDIS_URL={url}")
    prefix = f"{stack.SESSION_PREFIX}-kombu-{secrets.token_hex(3)}:"
    yield url, prefix
    stack.redis_delete_prefix(url, prefix)


@pytest.fixture
def connection(broker: tuple[str, str]) -> Iterator[Connection]:
    """A broker connection with the fixes applied, on the test's own key prefix."""
    kombu_fixes.apply()
    url, prefix = broker
    connection = Connection(url, transport_options={"global_keyprefix": prefix})
    yield connection
    connection.close()


def test_closing_a_detached_channel_keeps_its_unacked_message_and_raises_nothing(
    broker: tuple[str, str], connection: Connection
) -> None:
    url, prefix = broker
    queue = connection.SimpleQueue("held")
    queue.put({"task": "held"})
    queue.get(timeout=2)  # delivered and never acknowledged, as an acks_late task is
    # Connection.collect() leaves exactly this: the channel open, the transport detached.
    connection.transport.client = None

    connection.close()

    # Still in Redis's unacked hash: the visibility timeout hands it out again.
    assert redis.Redis.from_url(url).hlen(f"{prefix}unacked") == 1


def test_a_detached_channel_asked_to_connect_raises_a_connection_error(
    connection: Connection,
) -> None:
    channel = connection.default_channel
    connection.transport.client = None

    with pytest.raises(redis.exceptions.ConnectionError):
        channel._connparams()
    assert isinstance(redis.exceptions.ConnectionError(), connection.connection_errors)


def test_a_channel_reuses_one_client_for_its_messages_until_its_pool_is_replaced(
    broker: tuple[str, str], connection: Connection
) -> None:
    url, prefix = broker
    channel = connection.default_channel
    built: list[object] = []
    real_client = channel.Client

    def counting(*args: object, **kwargs: object) -> object:
        client = real_client(*args, **kwargs)
        built.append(client)
        return client

    channel.Client = counting
    queue = connection.SimpleQueue("reused")
    for number in range(5):
        queue.put({"n": number})
    for _ in range(5):
        queue.get(timeout=2).ack()  # recorded as unacked on arrival, removed on the ack

    assert len(built) == 1
    assert redis.Redis.from_url(url).hlen(f"{prefix}unacked") == 0

    # A lost connection makes kombu drop its pools; the next call builds on the new pool.
    old_pool = channel.pool
    channel._disconnect_pools()
    queue.put({"n": 5})
    queue.get(timeout=2).ack()

    assert len(built) == 2
    assert built[-1].connection_pool is channel.pool is not old_pool
