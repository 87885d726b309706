from __future__ import annotations

from django.urls import path

from polls import consumers

websocket_urlpatterns = [
    path("ws/polls/<int:question_id>/results/", consumers.ResultsConsumer.as_asgi()),
]
