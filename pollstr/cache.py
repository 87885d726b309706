"""Django's Redis cache, keeping one redis-py client per server for the whole process.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` for every cache
operation; a request that touches the cache a dozen times paid for a dozen client
objects. A ``redis.Redis`` is thread-safe (connections come from its pool), so one per
server serves every thread and every cache object of the process.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient

# Django keeps a cache object per thread and per asyncio context: each websocket that
# read its session through the cache built its own client, connection pool and Redis
# connection (twice the memory per socket, one Redis connection per socket). One client
# per server and options serves the whole process.
_shared_clients: dict[tuple[Any, ...], Any] = {}
_shared_lock = threading.Lock()


class PooledRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: Any, *args: Any, **kwargs: Any) -> None:
        super().__init__(servers, *args, **kwargs)
        self._shared_key = (tuple(servers), repr(sorted(kwargs.items(), key=str)))

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        # One for writes, one for reads (with several servers, a process keeps reading
        # from the replica it first picked).
        shared_key = (*self._shared_key, write)
        client = _shared_clients.get(shared_key)
        if client is None:
            with _shared_lock:
                client = _shared_clients.get(shared_key)
                if client is None:
                    client = _shared_clients[shared_key] = super().get_client(key, write=write)
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = PooledRedisCacheClient
