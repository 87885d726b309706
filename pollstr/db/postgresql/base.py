"""Django's PostgreSQL backend, with a cheaper check of the pooled connection it takes.

Django's pool checks a connection every time one leaves it (``CONN_HEALTH_CHECKS``:
psycopg_pool's ``check_connection``, an empty query): once per request, per websocket
database hop and per task, a round trip each that PostgreSQL has to answer. An idle
connection the server has ended (a restart, an administrator's ``pg_terminate_backend``,
an idle timeout) has something to read on its socket: the server's goodbye, or the end
of the stream. So the socket is looked at first, without blocking; only a connection
with something waiting on it, or one psycopg knows is closed, gets the full check, which
discards it if it is dead (the request gets a fresh one). A healthy idle connection has
nothing to read and is handed out as it is. Everything else is Django's backend.
"""

from __future__ import annotations

import select
from typing import Any

from django.db.backends.base.base import NO_DB_ALIAS
from django.db.backends.postgresql import base
from psycopg import OperationalError
from psycopg_pool import ConnectionPool


def connection_check(connection: Any) -> None:
    """Raise if ``connection`` cannot be used (psycopg_pool then opens another)."""
    if connection.closed or connection.broken:
        raise OperationalError("the connection is closed")
    # poll(), not select(): a web process with thousands of sockets has descriptors
    # beyond select()'s limit of 1024.
    poller = select.poll()
    poller.register(connection.fileno(), select.POLLIN | select.POLLPRI)
    if poller.poll(0):
        ConnectionPool.check_connection(connection)


# django-stubs leave out the pool's internals this class shares with Django's.
_DjangoWrapper: Any = base.DatabaseWrapper


class DatabaseWrapper(_DjangoWrapper):
    @property
    def pool(self) -> ConnectionPool | None:
        pool_options = self.settings_dict["OPTIONS"].get("pool")
        if self.alias == NO_DB_ALIAS or not pool_options:
            return None
        if self.alias not in self._connection_pools:
            if self.settings_dict.get("CONN_MAX_AGE", 0) != 0:
                return super().pool  # Django's own refusal
            connect_kwargs = self.get_connection_params()
            connect_kwargs["autocommit"] = True  # as Django's: it sets its own later
            pool = ConnectionPool(
                kwargs=connect_kwargs,
                open=False,
                configure=self._configure_connection,
                check=connection_check,
                **({} if pool_options is True else pool_options),
            )
            self._connection_pools.setdefault(self.alias, pool)
        return self._connection_pools[self.alias]
