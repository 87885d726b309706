"""Every websocket path, and the gate each socket passes once, at its handshake.

channels' usual stack (AllowedHostsOriginValidator, then AuthMiddlewareStack's cookie,
session and auth middleware, then URLRouter) copies the scope at every layer and leaves
each socket holding, for as long as it is open, the handshake's headers, a cookie dict, a
lazy session store and a lazy user. Thousands of idle results pages pay for that in
memory (benchmarks, P4). ``SocketGate`` makes the same decisions once and hands the
consumer a scope of its own with only what the consumers read.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any
from urllib.parse import ParseResult, urlparse

from channels.generic.websocket import AsyncWebsocketConsumer
from channels.security.websocket import OriginValidator, WebsocketDenier
from django.conf import settings
from django.http import parse_cookie
from django.urls import URLPattern

from polls.routing import websocket_urlpatterns as polls_websockets
from pollstr.languages import scope_language
from two_factor.routing import websocket_urlpatterns as two_factor_websockets

Scope = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[MutableMapping[str, Any]]]
Send = Callable[[MutableMapping[str, Any]], Awaitable[None]]

# "No such socket": a stale page or a probe gets a clean close, never a server error.
CLOSE_NOT_FOUND = 4404


class UnknownPathConsumer(AsyncWebsocketConsumer):
    async def connect(self) -> None:
        await self.close(code=CLOSE_NOT_FOUND)


websocket_urlpatterns: list[URLPattern] = [*two_factor_websockets, *polls_websockets]


class SocketGate:
    """The websocket application: origin, route and session, checked once per socket.

    In this order, as channels' stack did:

    1. **Origin.** The ``Origin`` header must name one of ALLOWED_HOSTS, by the rule of
       channels' ``OriginValidator`` (scheme, host and port; a leading dot for
       subdomains; ``*`` for any). A socket without one, with a foreign one, or with one
       that cannot even be parsed ("http://[::1", a port out of range) is refused: closed
       before it is accepted, which servers answer with HTTP 403.
    2. **Route.** The path picks the consumer (``websocket_urlpatterns``); any other path
       is closed with 4404.
    3. **Session.** The session cookie's key goes to the consumer, which loads the
       session and resolves its user with django.contrib.auth.get_user()'s checks, the
       auth hash included, so a changed password or a rotated session no longer
       authenticates (without get_user's side effects: a socket never flushes a
       session), in the same database hop as its decision on whether that user may
       watch (two_factor.consumers, ``SessionBoundConsumer.connect``).

    The consumer's scope holds: ``type``, ``path``, ``query_string``, ``scheme``,
    ``host``, ``url_route``, ``language`` (as LocaleMiddleware would choose it for the
    handshake), ``csrf_token`` (the browser's CSRF cookie, for the forms pushed to it),
    ``user_id`` and ``session_key`` (None until the consumer finds that the session
    authenticates someone), and ``session_cookie``: the cookie's key, for the consumer's
    decision at connect only (it takes it out of its scope).
    """

    def __init__(self, routes: Sequence[URLPattern]) -> None:
        self.routes = list(routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        origin = _origin(scope)
        if origin is None or not _origin_allowed(origin):
            await WebsocketDenier()(scope, receive, send)
            return
        routed = self._route(scope)
        if routed is None:
            await UnknownPathConsumer.as_asgi()(scope, receive, send)
            return
        consumer, kwargs = routed
        await consumer(_consumer_scope(scope, kwargs), receive, send)

    def _route(self, scope: Scope) -> tuple[Any, dict[str, Any]] | None:
        path = str(scope.get("path", ""))
        root_path = str(scope.get("root_path", ""))
        if root_path:
            if not path.startswith(root_path):
                return None
            path = path[len(root_path) :]
        path = path.lstrip("/")  # as Django's own resolver sees it
        for route in self.routes:
            match = route.pattern.match(path)
            if match:
                _remaining, _args, kwargs = match
                return route.callback, {**kwargs, **route.default_args}
        return None


def _origin(scope: Scope) -> ParseResult | None:
    """The handshake's Origin header, parsed (the last one, as channels reads it); None
    when there is none or one of them cannot be parsed."""
    parsed = None
    for name, value in scope.get("headers") or ():
        if name == b"origin":
            try:
                parsed = urlparse(bytes(value).decode("latin1"))
                _ = (parsed.hostname, parsed.port)  # both raise on a malformed netloc
            except ValueError:
                return None
    return parsed


def _origin_allowed(origin: ParseResult) -> bool:
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]  # as Django's own host check
    return bool(OriginValidator(None, allowed).valid_origin(origin))


def _consumer_scope(scope: Scope, route_kwargs: dict[str, Any]) -> Scope:
    """The consumer's scope (see SocketGate); nothing in it refers to the handshake's."""
    headers: dict[bytes, bytes] = {}
    for name, value in scope.get("headers") or ():
        headers[bytes(name)] = bytes(value)  # the last of a repeated header, as channels
    cookie_header = headers.get(b"cookie")
    cookies = parse_cookie(cookie_header.decode("latin1")) if cookie_header else {}
    return {
        "type": "websocket",
        "path": scope.get("path", ""),
        "query_string": scope.get("query_string", b""),
        "scheme": scope.get("scheme", "ws"),
        "host": headers.get(b"host", b"localhost").decode("latin1"),
        "url_route": {"args": (), "kwargs": route_kwargs},
        "language": scope_language({"cookies": cookies, "headers": headers.items()}),
        "csrf_token": cookies.get(settings.CSRF_COOKIE_NAME, ""),
        "user_id": None,
        "session_key": None,
        "session_cookie": cookies.get(settings.SESSION_COOKIE_NAME) or None,
    }


websocket_application = SocketGate(websocket_urlpatterns)
