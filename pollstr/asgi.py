"""ASGI entry point: HTTP to Django (one worker thread per request, pollstr/http_bridge.py),
websockets through one gate of origin, route and session checks (pollstr/routing.py)."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pollstr.settings")
# Django must be set up before anything imports models (the consumers do).
django_wsgi_app = get_wsgi_application()

from channels.routing import ProtocolTypeRouter  # noqa: E402
from django.conf import settings  # noqa: E402

from pollstr.access_log import AccessLogMiddleware  # noqa: E402
from pollstr.collector import settle as settle_collector  # noqa: E402
from pollstr.embedded_worker import start_embedded_worker_if_configured  # noqa: E402
from pollstr.http_bridge import ThreadedHTTP  # noqa: E402
from pollstr.metrics import WebsocketConnectionsMiddleware  # noqa: E402
from pollstr.routing import websocket_application  # noqa: E402

protocols = ProtocolTypeRouter(
    {
        "http": ThreadedHTTP(django_wsgi_app, threads=settings.WEB_HTTP_THREADS),
        # Counted first (pollstr.metrics), so refused sockets show in the gauge too.
        "websocket": WebsocketConnectionsMiddleware(websocket_application),
    }
)
# Outermost: every request and handshake gets one access-log line (pollstr/access_log.py).
application = AccessLogMiddleware(protocols)

start_embedded_worker_if_configured()
# Everything is loaded: the collector stops walking it (pollstr/collector.py).
settle_collector()
