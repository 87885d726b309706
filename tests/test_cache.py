"""The project's Redis cache keeps its redis-py clients (not one per operation), on a real
Redis."""

from __future__ import annotations

import os
import threading
import uuid

import pytest
from django.core.cache import caches

pytestmark = pytest.mark.redis


@pytest.fixture
def redis_cache(settings, monkeypatch):
    # The process's shared clients (pollstr/cache.py) start empty for each test.
    monkeypatch.setattr("pollstr.cache._shared_clients", {})
    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    settings.CACHES = {
        "default": {
            "BACKEND": "pollstr.cache.RedisCache",
            "LOCATION": url,
            "KEY_PREFIX": f"pollstr-test-cache-{uuid.uuid4().hex}",
        }
    }
    cache = caches["default"]
    yield cache
    cache.clear()


def test_every_operation_and_thread_shares_one_client(redis_cache):
    import redis

    built: list[object] = []
    original = redis.Redis.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        original(self, *args, **kwargs)

    redis.Redis.__init__ = counting  # type: ignore[method-assign]
    try:
        for index in range(20):
            redis_cache.set(f"k{index}", index)
            assert redis_cache.get(f"k{index}") == index
        threads = [threading.Thread(target=redis_cache.incr, args=("k1",)) for _ in range(5)]
        redis_cache.set("k1", 0)
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
    finally:
        redis.Redis.__init__ = original  # type: ignore[method-assign]

    # One client for writes, one for reads, over the one connection pool: not one per call.
    assert len(built) == 2
    assert len({id(client.connection_pool) for client in built}) == 1
    assert redis_cache.get("k1") == 5


def test_it_is_still_djangos_redis_cache(redis_cache):
    from django.core.cache.backends.redis import RedisCache

    assert isinstance(redis_cache, RedisCache)
    assert redis_cache.add("once", 1) is True
    assert redis_cache.add("once", 2) is False


def test_cache_objects_of_other_threads_and_contexts_share_the_process_client(redis_cache):
    """Django builds a cache object per thread and per asyncio context (each websocket
    reading its session): they must not each open a connection pool of their own."""
    import asyncio

    from pollstr.cache import RedisCache

    def client_of_a_new_cache_object() -> object:
        fresh = caches.create_connection("default")
        assert isinstance(fresh, RedisCache)
        fresh.set("shared-probe", 1)
        return fresh._cache.get_client(write=True)

    async def in_contexts() -> list[object]:
        return await asyncio.gather(
            *(asyncio.to_thread(client_of_a_new_cache_object) for _ in range(5))
        )

    clients = asyncio.run(in_contexts())
    clients.append(client_of_a_new_cache_object())
    assert len({id(client) for client in clients}) == 1
