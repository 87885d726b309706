"""Two fixes for kombu's Redis transport: a worker must survive a Redis restart, and
must not build a Redis client per message.

**Surviving a restart.**

kombu 5.7.0 (the newest release) ends the worker when the broker connection drops while
the worker holds unacknowledged messages (acks_late tasks running, or retries waiting
for their countdown), which with ``task_acks_late`` is nearly always:

1. Celery's consumer sees the connection error and closes the kombu ``Connection``
   twice: ``collect()``, then ``close()``.
2. The first pass fails part-way, since Redis is down (the channel's pending BRPOP read
   raises a connection error, which kombu swallows), and still detaches the transport
   from its connection: ``transport.client = None``.
3. The second pass closes the still-open channel again. ``Channel.close()`` drops its
   connection pool, then requeues the unacknowledged messages, which needs a new pool,
   built from ``self.connection.client.hostname``. That raises ``AttributeError``
   ("'NoneType' object has no attribute 'hostname'"), which is not a connection error,
   so Celery logs "Unrecoverable error" and the worker exits.

The fix: a channel whose transport was detached (or which was itself detached) raises
redis-py's ``ConnectionError`` when asked to connect. kombu and Celery treat that as
the lost connection it is: the close completes, the consumer reconnects. Messages it
could not requeue stay in Redis's unacked hash, which a worker requeues once the
visibility timeout passes; the verification reconciler
(two_factor.services.verification_reconcile) re-drives their verifications long before.

**A client per message.** kombu's ``Channel.conn_or_acquire`` builds a new redis-py
client on its channel's pool for every synchronous operation, and the worker makes two
per task: recording the message as unacknowledged when it arrives (``QoS.append``) and
removing it on the ack. redis-py 8's client builds its response-callback table each
time: ~0.17 ms of a message's ~0.56 ms of CPU in the consumer
(``python -m benchmarks.broker_cost``). redis-py clients are thread-safe (a command takes a
connection from the pool), so each channel keeps one per pool: when kombu replaces the
pool (after a lost connection) the next call builds a new client on it.

Applied once by ``pollstr.celery`` (every process that loads the Celery app). Remove the
first when kombu's ``Channel._connparams`` handles a detached transport itself, the
second when ``Channel._create_client`` stops building a client per call;
tests/test_kombu_fixes.py shows whether the installed kombu still needs them.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

PATCHED_MARKER = "_pollstr_kombu_fix"


def apply() -> None:
    """Patch kombu's Redis ``Channel._connparams`` and ``_create_client`` (idempotent)."""
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if not getattr(channel._connparams, PATCHED_MARKER, False):  # type: ignore[attr-defined]
        channel._connparams = _refuse_when_detached(channel._connparams)  # type: ignore[attr-defined]
    if not getattr(channel._create_client, PATCHED_MARKER, False):  # type: ignore[attr-defined]
        channel._create_client = _one_client_per_pool(channel._create_client)  # type: ignore[attr-defined]


def _refuse_when_detached(original: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    @functools.wraps(original)
    def _connparams(self: Any, asynchronous: bool = False) -> dict[str, Any]:
        transport = self.connection
        if transport is None or transport.client is None:
            from redis.exceptions import ConnectionError as RedisConnectionError

            raise RedisConnectionError(
                "the broker connection is closed: this Redis channel cannot reconnect"
            )
        return original(self, asynchronous=asynchronous)

    setattr(_connparams, PATCHED_MARKER, True)
    return _connparams


def _one_client_per_pool(original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def _create_client(self: Any, asynchronous: bool = False) -> Any:
        if asynchronous:
            return original(self, asynchronous=True)
        pool = self.pool
        held = self.__dict__.get("_pollstr_client")
        if held is None or held.connection_pool is not pool:
            held = original(self)
            self.__dict__["_pollstr_client"] = held
        return held

    setattr(_create_client, PATCHED_MARKER, True)
    return _create_client
