"""A fix for kombu's Redis transport: a worker must survive a Redis restart.

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

Applied once by ``pollstr.celery`` (every process that loads the Celery app). Remove it
when kombu's ``Channel._connparams`` handles a detached transport itself;
tests/test_kombu_fixes.py shows whether the installed kombu still needs it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

PATCHED_MARKER = "_pollstr_detached_transport_fix"


def apply() -> None:
    """Patch kombu's Redis ``Channel._connparams`` (idempotent)."""
    from kombu.transport import redis as kombu_redis

    original = kombu_redis.Channel._connparams  # type: ignore[attr-defined]
    if getattr(original, PATCHED_MARKER, False):
        return
    kombu_redis.Channel._connparams = _refuse_when_detached(original)  # type: ignore[attr-defined]


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
