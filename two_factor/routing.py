from __future__ import annotations

from django.urls import path

from two_factor import consumers

websocket_urlpatterns = [
    path("ws/2fa/<str:verification_id>/", consumers.VerificationConsumer.as_asgi()),
]
