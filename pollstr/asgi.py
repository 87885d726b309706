"""ASGI entry point: HTTP to Django (one worker thread per request, pollstr/http_bridge.py),
websockets through origin and auth checks."""

from __future__ import annotations

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pollstr.settings")
# Django must be set up before anything imports models (the consumers do).
django_wsgi_app = get_wsgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402
from django.conf import settings  # noqa: E402

from pollstr.access_log import AccessLogMiddleware  # noqa: E402
from pollstr.embedded_worker import start_embedded_worker_if_configured  # noqa: E402
from pollstr.http_bridge import ThreadedHTTP  # noqa: E402
from pollstr.metrics import WebsocketConnectionsMiddleware  # noqa: E402
from pollstr.routing import RefuseUnparseableOrigin, websocket_urlpatterns  # noqa: E402

protocols = ProtocolTypeRouter(
    {
        "http": ThreadedHTTP(django_wsgi_app, threads=settings.WEB_HTTP_THREADS),
        # Counted first (pollstr.metrics), so refused sockets show in the gauge too.
        "websocket": WebsocketConnectionsMiddleware(
            RefuseUnparseableOrigin(
                AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
            )
        ),
    }
)
# Outermost: every request and handshake gets one access-log line (pollstr/access_log.py).
application = AccessLogMiddleware(protocols)

start_embedded_worker_if_configured()
