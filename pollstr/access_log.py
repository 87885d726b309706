"""One access-log line per request and websocket handshake, the same under every server.

daphne (``make run``) writes its own access log straight to stdout, and gunicorn's
uvicorn workers write none unless asked; neither knows the request id, and both would log
every probe. So the servers' own access logs are off (the Makefile's daphne command,
docker-compose.yml's gunicorn) and this ASGI middleware, outermost in ``pollstr/asgi.py``,
logs ``http.access`` on the ``pollstr.access`` logger, in the configured format, with:

- ``request_id``: the id the app bound for the request (``pollstr.logs``), read from the
  response's ``X-Request-ID``; for a websocket, the handshake's header when it is a safe
  token (the proxy sends one), else ``-``;
- method, path (never the query string: it may carry a ``next`` URL or a token), status
  (101 for an accepted websocket, 403 for a refused one), duration, and the client
  address as ``pollstr.client_ip`` decides it (``X-Forwarded-For`` only through
  ``TRUSTED_PROXY_COUNT`` proxies).

Probes and scrapers (``pollstr.logs.QUIET_PATHS``) are never logged.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from pollstr.client_ip import client_address
from pollstr.logs import NO_REQUEST_ID, QUIET_PATHS, log_event, request_id_bound, safe_request_id

logger = logging.getLogger("pollstr.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

_REQUEST_ID_HEADER = b"x-request-id"


class AccessLogMiddleware:
    def __init__(self, app: Callable[[Scope, Receive, Send], Awaitable[None]]) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope.get("type")
        if kind not in ("http", "websocket") or str(scope.get("path", "")).startswith(QUIET_PATHS):
            await self.app(scope, receive, send)
            return
        started = time.monotonic()
        answer: dict[str, Any] = {"status": None, "request_id": None}
        logged = False

        def log_once() -> None:
            nonlocal logged
            if not logged:
                logged = True
                _log(scope, answer, time.monotonic() - started)

        async def watching_send(message: Message) -> None:
            event = message.get("type")
            if event == "http.response.start":
                answer["status"] = message.get("status")
                answer["request_id"] = _header(message.get("headers"), _REQUEST_ID_HEADER)
            elif event == "websocket.accept":
                answer["status"] = 101
            elif event == "websocket.close" and answer["status"] is None:
                answer["status"] = 403  # closed before it was accepted: refused
            elif event == "websocket.http.response.start":
                answer["status"] = message.get("status")
            await send(message)
            # A websocket is logged at its handshake, not when the page closes hours later.
            if kind == "websocket" and answer["status"] is not None:
                log_once()

        try:
            await self.app(scope, receive, watching_send)
        except BaseException:
            if answer["status"] is None:
                answer["status"] = 500
            raise
        finally:
            log_once()


def _log(scope: Scope, answer: dict[str, Any], seconds: float) -> None:
    headers = scope.get("headers")
    request_id = answer["request_id"]
    if request_id is None and scope.get("type") == "websocket":
        request_id = _header(headers, _REQUEST_ID_HEADER)
    request_id = safe_request_id(request_id) or NO_REQUEST_ID
    client = scope.get("client") or (None, None)
    with request_id_bound(request_id):
        log_event(
            logger,
            "http.access",
            method=scope.get("method", "GET"),
            path=scope.get("path", ""),
            status=answer["status"] if answer["status"] is not None else "-",
            duration_ms=round(seconds * 1000, 1),
            client=client_address(
                peer=str(client[0] or ""),
                forwarded_for=_header(headers, b"x-forwarded-for") or "",
            )
            or "-",
        )


def _header(headers: Any, name: bytes) -> str | None:
    for key, value in headers or ():
        if key.lower() == name:
            return bytes(value).decode("latin1")
    return None
