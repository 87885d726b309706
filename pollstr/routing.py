from __future__ import annotations

from polls.routing import websocket_urlpatterns as polls_websockets
from two_factor.routing import websocket_urlpatterns as two_factor_websockets

websocket_urlpatterns = [*two_factor_websockets, *polls_websockets]
