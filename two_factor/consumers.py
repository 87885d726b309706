"""Websockets bound to a session: the verification page's (/ws/2fa/<id>/) and the base
class the results page's shares.

A socket lives only as long as its session's right to it. Access is checked when it
connects (with the session and user pollstr.routing's gate loaded at the handshake; the
scope keeps only the user's id, the session key and the CSRF cookie); at once when the
user's sessions change (a logout of this session from any tab, a password change, a
number moving to another account reach each of the user's sockets through a per-user
group, see two_factor.signals); against the clock before every push (the session's and
the verified flag's expiry, known since connect: no database); and by a jittered
background re-read of the stored session every LIVE_SOCKET_RECHECK_SECONDS, which catches
what sends no event (an operator deleting a session). Those re-reads are scheduled by one
timer per process (``_Rechecks``), not by a sleeping task per socket: an idle socket costs
a heap entry, not a task. Pushes themselves carry HTML rendered once per change by the
publisher (two_factor.live, polls.live), so a change reaches thousands of sockets without
a query or a render per socket.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import random
import time
import weakref
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from importlib import import_module
from typing import Any
from urllib.parse import parse_qs
from uuid import UUID

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth import (
    BACKEND_SESSION_KEY,
    HASH_SESSION_KEY,
    SESSION_KEY,
    get_user_model,
    load_backend,
)
from django.contrib.auth.models import AbstractBaseUser
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from redis.exceptions import RedisError

from pollstr.channel_layers import groups_add, groups_discard
from pollstr.fanout import relay
from two_factor.live import (
    CSRF_PLACEHOLDER,
    Rendered,
    render_fragment,
    user_sockets_group,
    verification_group,
)
from two_factor.models import (
    TRAIL_OF_VERIFICATION,
    VERIFICATION_BY_ID,
    Status,
    session_key_hash,
    verification_of_session,
)
from two_factor.status import row_stamp

logger = logging.getLogger(__name__)

# 4403: the close code browsers see for "not yours or no such thing", deliberately the
# same for both so an id's existence is never revealed; also "no longer allowed".
CLOSE_FORBIDDEN = 4403
# The socket's session ended (logout, password change, expiry): sign in again.
CLOSE_LOGGED_OUT = 4401
# The channel layer (Redis) cannot be reached: "try again later". Not the standard 1013:
# daphne's websocket library only lets an application send 1000 or 3000-4999 (it drops
# any other close silently, leaving the socket open), so ours is 4013, and live.js
# reconnects on it (htmx's extension reconnects by itself only on 1006/1011-1013). The
# page polls meanwhile and says so.
CLOSE_TRY_AGAIN = 4013
# What a channel layer that cannot be reached raises.
_LAYER_DOWN = (RedisError, OSError)


# --- a fresh look at the socket's session ------------------------------------------------


@dataclass(frozen=True)
class SessionNow:
    """What the socket's session holds right now, and the user it still authenticates."""

    data: Any  # the session store, read as a mapping
    user: AbstractBaseUser


def session_authenticated(*, session_key: str) -> SessionNow | None:
    """The session as stored now and the user it authenticates; None if it authenticates
    nobody (no such session, no user in it, an unknown backend, a stale auth hash).

    The checks of django.contrib.auth.get_user(), without its side effects: reading
    never flushes or rewrites a session.
    """
    data = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    user_id = data.get(SESSION_KEY)
    backend_path = data.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return None
    user = load_backend(backend_path).get_user(get_user_model()._meta.pk.to_python(user_id))
    stored_hash = str(data.get(HASH_SESSION_KEY) or "")
    if user is None or not stored_hash:
        return None
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(stored_hash, known) for known in hashes):
        return None
    return SessionNow(data=data, user=user)


def session_now(*, session_key: str | None, user_id: Any) -> SessionNow | None:
    """The session as stored now, if it still authenticates ``user_id``; else None."""
    if not session_key or user_id is None:
        return None
    now = session_authenticated(session_key=session_key)
    if now is None or str(now.user.pk) != str(user_id):
        return None
    return now


# --- a channel layer that stops answering ends this process's sockets ---------------------
# An open socket whose channel layer (Redis) is gone would wait on it silently, getting no
# pushes while the page believes it is live. One check per process (a PING every few
# seconds while sockets are open) closes them with "try again later" instead, so pages
# fall back to polling and say so (static/pollstr/live.js), and reconnect once it answers.
LAYER_CHECK_SECONDS = 2.0
_open_sockets: weakref.WeakSet[SessionBoundConsumer] = weakref.WeakSet()
_layer_check: asyncio.Task[None] | None = None


def _layer_check_start(layer: Any) -> None:
    global _layer_check
    if not hasattr(layer, "connection"):
        return  # the embedded, in-process layer cannot go away
    if _layer_check is None or _layer_check.done():
        _layer_check = asyncio.ensure_future(_layer_check_forever(layer))


async def _layer_check_forever(layer: Any) -> None:
    while _open_sockets:
        await asyncio.sleep(LAYER_CHECK_SECONDS)
        try:
            await asyncio.wait_for(layer.connection(0).ping(), timeout=2 * LAYER_CHECK_SECONDS)
        except (TimeoutError, *_LAYER_DOWN) as error:
            sockets = list(_open_sockets)
            logger.warning(
                "Live updates unavailable (%s): closing %d socket(s) with try-again",
                error or type(error).__name__,
                len(sockets),
            )
            for consumer in sockets:
                with suppress(Exception):
                    await consumer._end_layer_down()


# --- the periodic re-read: one timer per process -------------------------------------------
# Each open socket is due for a re-read of its session every LIVE_SOCKET_RECHECK_SECONDS,
# jittered (×0.5-1.0) so thousands opened together don't check together. A sleeping task
# per socket held a task, a coroutine and a timer for every idle socket; here a heap of due
# times and one loop timer (armed for the earliest) start a short task per socket only
# when it is due. A socket that closes leaves a dead entry, skipped when it comes due.


class _Rechecks:
    """The due re-reads of one event loop's sockets."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._heap: list[tuple[float, int, weakref.ref[SessionBoundConsumer]]] = []
        self._order = itertools.count()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at = 0.0
        self._running: set[asyncio.Task[None]] = set()

    def schedule(self, consumer: SessionBoundConsumer) -> None:
        interval = settings.LIVE_SOCKET_RECHECK_SECONDS
        due = self._loop.time() + interval * random.uniform(0.5, 1.0)
        consumer._recheck_due = due
        heapq.heappush(self._heap, (due, next(self._order), weakref.ref(consumer)))
        if self._timer is None or due < self._timer_at:
            self._arm()

    def pending(self) -> int:
        """Sockets waiting for their next re-read (tests)."""
        return sum(1 for due, _, ref in self._heap if _is_due_entry(ref(), due))

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._heap:
            self._timer_at = self._heap[0][0]
            self._timer = self._loop.call_at(self._timer_at, self._fire)

    def _fire(self) -> None:
        self._timer = None
        now = self._loop.time()
        while self._heap and self._heap[0][0] <= now:
            due, _, ref = heapq.heappop(self._heap)
            consumer = ref()
            if consumer is None or not _is_due_entry(consumer, due):
                continue  # closed, or rescheduled since
            consumer._recheck_due = None
            task = self._loop.create_task(consumer._recheck_once())
            self._running.add(task)
            task.add_done_callback(self._running.discard)
        self._arm()


def _is_due_entry(consumer: SessionBoundConsumer | None, due: float) -> bool:
    return consumer is not None and consumer._recheck_due == due and not consumer._ended


_rechecks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Rechecks] = (
    weakref.WeakKeyDictionary()
)


def rechecks() -> _Rechecks:
    """This event loop's scheduler (one per server process; tests get one per loop)."""
    loop = asyncio.get_running_loop()
    found = _rechecks.get(loop)
    if found is None:
        found = _rechecks[loop] = _Rechecks(loop)
    return found


class SessionBoundConsumer(AsyncWebsocketConsumer):
    """Joins its live group and its user's group; pushes only while access holds.

    Subclasses say who may watch (``may_watch``, run in a database thread), which group
    carries their updates (``live_group``) and what to send (``send_current``).
    """

    # A live group that many sockets of one process share (a poll's results) is joined
    # once per process and fanned out in memory (pollstr/fanout.py).
    relayed = False
    _groups: tuple[str, ...] = ()
    _relayed_group: str | None = None
    # The page's language, as LocaleMiddleware chose it for the page (its cookie or
    # Accept-Language): the socket joins its live group in that language and renders in it.
    language = ""
    _ended = False
    _valid_until: float | None = None  # when access ends by the clock alone
    _recheck_due: float | None = None  # loop time of the next periodic re-read

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        """A channel layer that is down refuses the socket (or ends it) with "try again
        later", never an HTTP 500 for the handshake."""
        try:
            await super().__call__(scope, receive, send)
        except _LAYER_DOWN as error:
            logger.warning("Live updates unavailable (%s): socket refused", error)
            with suppress(Exception):  # the connection may be gone already
                await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN})

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch without the thread hop it makes before every message
        (``aclose_old_connections``: close stale database connections). This socket's
        database work runs only through ``database_sync_to_async``, which closes them
        before and after, in the thread that holds them; the extra hop cost each push a
        quarter of a millisecond and queued it behind the process's one thread-sensitive
        thread, where every socket's database work waits (docs/ARCHITECTURE.md,
        "Throughput")."""
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        """Channels' disconnect without its closing hop (see ``dispatch``); the live
        groups are left by ``disconnect``, any class-level ``groups`` as Channels leaves
        them."""
        if self.groups:
            await groups_discard(self.channel_layer, self.groups, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()

    def may_watch(self, *, user: Any, session: Mapping[str, Any]) -> bool:
        raise NotImplementedError

    def live_group(self) -> str:
        raise NotImplementedError

    async def send_current(self) -> None:
        raise NotImplementedError

    async def connect(self) -> None:
        self.language = self.scope["language"]
        # The session cookie's key the gate passed on (pollstr.routing): for this
        # decision only; the scope keeps the key of a session that authenticates.
        cookie = self.scope.pop("session_cookie", None)
        if not cookie or not await self._may_watch_at_connect(cookie):
            await self.close(code=CLOSE_FORBIDDEN)
            return
        own_groups = [user_sockets_group(self.scope["user_id"])]
        if self.relayed:
            self._relayed_group = self.live_group()
            await relay().join(self._relayed_group, id(self), self._take_relayed)
        else:
            own_groups.append(self.live_group())
        self._groups = tuple(own_groups)
        await groups_add(self.channel_layer, own_groups, self.channel_name)
        await self.accept()
        _open_sockets.add(self)
        _layer_check_start(self.channel_layer)
        rechecks().schedule(self)
        # Always start from the current state: reconnects and late joiners are never stale.
        await self.send_current()

    async def disconnect(self, code: int) -> None:
        _open_sockets.discard(self)
        self._recheck_due = None  # its pending re-read, if any, is skipped
        await self._leave_groups()

    def access_expires(self, *, user: Any, session: Any) -> float | None:
        """Epoch seconds at which access ends by the clock (subclasses narrow it)."""
        return session.get_expiry_date().timestamp()

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        # The page never needs to send anything; whatever arrives is ignored, not trusted.
        logger.debug("ignored a client frame on %s", self.scope.get("path"))

    async def push_html(self, html: str) -> None:
        """Send a fragment the publisher rendered once for every socket."""
        if self._ended:
            return
        if self._valid_until is not None and time.time() >= self._valid_until:
            code = await self._access_ended()
            if code is not None:
                await self._end(code)
                return
        await self.send(text_data=html)

    async def push(self) -> None:
        """Render and send the current state (a publisher that sent no HTML)."""
        if self._ended:
            return
        code = await self._access_ended()
        if code is not None:
            await self._end(code)
            return
        await self.send_current()

    async def _recheck_once(self) -> None:
        """The periodic re-read (run by ``_Rechecks`` when due); schedules the next."""
        if self._ended or self not in _open_sockets:
            return
        try:
            code = await self._access_ended()
        except Exception:
            # The session store or the database failed this once: try at the next one.
            logger.warning("Could not re-check a socket's session", exc_info=True)
            code = None
        if self._ended or self not in _open_sockets:
            return  # closed meanwhile
        if code is not None:
            await self._end(code)
            return
        rechecks().schedule(self)

    async def session_ended(self, event: dict[str, Any]) -> None:
        if constant_time_compare(str(event.get("session", "")), self._session_hash()):
            await self._end(CLOSE_LOGGED_OUT)

    async def access_changed(self, event: dict[str, Any]) -> None:
        code = await self._access_ended()
        if code is not None:
            await self._end(code)

    @database_sync_to_async
    def _may_watch_at_connect(self, session_key: str) -> bool:
        """The session loaded, its user resolved and the decision made, in one hop; the
        loaded session and user are not kept (an open socket holds only their keys)."""
        now = session_authenticated(session_key=session_key)
        if now is None:
            return False
        self.scope["user_id"], self.scope["session_key"] = now.user.pk, session_key
        if not self.may_watch(user=now.user, session=now.data):
            self.scope["user_id"] = self.scope["session_key"] = None
            return False
        self._valid_until = self.access_expires(user=now.user, session=now.data)
        return True

    @database_sync_to_async
    def _access_ended(self) -> int | None:
        """None while access holds; else the close code that says why it ended."""
        now = session_now(session_key=self._session_key(), user_id=self.scope["user_id"])
        if now is None:
            return CLOSE_LOGGED_OUT
        if not self.may_watch(user=now.user, session=now.data):
            return CLOSE_FORBIDDEN
        return None

    async def _end(self, code: int) -> None:
        if self._ended:
            return
        self._ended = True
        await self._leave_groups()
        await self.close(code=code)

    async def _end_layer_down(self) -> None:
        """Close without leaving the groups: the layer is gone (memberships expire)."""
        if self._ended:
            return
        self._ended = True
        self._groups = ()
        _open_sockets.discard(self)
        await self.close(code=CLOSE_TRY_AGAIN)

    async def _leave_groups(self) -> None:
        groups, self._groups = self._groups, ()
        relayed, self._relayed_group = self._relayed_group, None
        if relayed is not None:
            await relay().leave(relayed, id(self))
        if groups:
            await groups_discard(self.channel_layer, groups, self.channel_name)

    async def _take_relayed(self, message: dict[str, Any]) -> None:
        """A message of the relayed group, handled as Channels would dispatch it."""
        handler = getattr(self, str(message.get("type", "")).replace(".", "_"), None)
        if handler is not None and not self._ended:
            await handler(message)

    def _session_key(self) -> str | None:
        return self.scope.get("session_key")

    def _session_hash(self) -> str:
        key = self._session_key()
        return session_key_hash(key) if key else ""


class VerificationConsumer(SessionBoundConsumer):
    # The version (newest audit event id) of the state this socket last showed: pushes
    # come from several processes, so one rendered before another may arrive after it,
    # and an older state never replaces a newer one on the page.
    shown_version = 0

    def live_group(self) -> str:
        verification_id = self._verification_id()
        assert verification_id is not None  # connect refused the socket otherwise
        return verification_group(verification_id, self.language)

    def may_watch(self, *, user: Any, session: Mapping[str, Any]) -> bool:
        verification_id = self._verification_id()
        if verification_id is None:
            return False
        own = verification_of_session(verification_id, user=user, session_key=self._session_key())
        return own is not None

    async def verification_changed(self, event: dict[str, Any]) -> None:
        html = event.get("html")
        if not isinstance(html, str):
            await self.push()
            return
        version = event.get("version")
        if isinstance(version, int):
            if version < self.shown_version:
                logger.debug("dropped a push older than the state shown (%s)", version)
                return
            self.shown_version = version
        # One render for every socket of this verification; only the CSRF token is this
        # browser's own (its cookie's secret is a valid form token).
        token = self.scope.get("csrf_token", "")
        await self.push_html(html.replace(CSRF_PLACEHOLDER, token))

    # The first frame is skipped when the page already shows the row as it is: its URL
    # says what it rendered (?shown=<row stamp>&v=<version>, two_factor/verify.html).
    _first_frame = True

    async def send_current(self) -> None:
        page = self._page_shown() if self._first_frame else None
        self._first_frame = False
        rendered = await self._render_status(page)
        if rendered is None:
            return
        self.shown_version = max(self.shown_version, rendered.version)
        if rendered.html:
            token = self.scope.get("csrf_token", "")
            await self.send(text_data=rendered.html.replace(CSRF_PLACEHOLDER, token))

    def _verification_id(self) -> UUID | None:
        try:
            return UUID(str(self.scope["url_route"]["kwargs"]["verification_id"]))
        except (KeyError, ValueError):
            return None

    def _page_shown(self) -> tuple[int, int] | None:
        """(row stamp, version) the page was rendered at, from the socket's URL."""
        query = parse_qs(bytes(self.scope.get("query_string") or b"").decode("latin-1"))
        try:
            return int(query["shown"][0]), max(0, int(query.get("v", ["0"])[0]))
        except (KeyError, ValueError):
            return None

    def _row_unchanged_since(self, verification_id: UUID, stamp: int) -> bool:
        """Whether the row is as the page showed it: not written since (every write moves
        `updated_at`, a queryset's too), and no step past its deadline (shown as the step
        it becomes, two_factor.status.as_shown)."""
        row = VERIFICATION_BY_ID.first(verification_id)
        if row is None:
            return False
        updated_at, status, channel_deadline = row.updated_at, row.status, row.channel_deadline
        step_over = channel_deadline is not None and channel_deadline <= timezone.now()
        if status == Status.SENT and step_over:
            return False
        return row_stamp(updated_at) == stamp

    @database_sync_to_async
    def _render_status(self, page: tuple[int, int] | None = None) -> Rendered | None:
        """The status as it is now, in one database hop; with ``page`` (what the page's
        URL says it shows), nothing to send (empty HTML, the page's version) while the
        row is still as the page shows it."""
        verification_id = self._verification_id()
        if verification_id is None:
            return None
        if page is not None and self._row_unchanged_since(verification_id, page[0]):
            return Rendered(html="", version=page[1])
        # The trail before the row (as two_factor.live does): the version never claims
        # more than what is shown. Rendered as a push is (the CSRF token's place held),
        # without a request's context processors: the fragment reads none of them.
        events = TRAIL_OF_VERIFICATION.all(verification_id)
        verification = VERIFICATION_BY_ID.first(verification_id)
        if verification is None:
            return None
        return render_fragment(verification, events=events, language=self.language or None)
