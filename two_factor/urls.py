from __future__ import annotations

from django.urls import path

from two_factor import views, webhooks

app_name = "two_factor"
urlpatterns = [
    path("", views.start, name="start"),
    path("number/", views.change_number, name="change_number"),
    path("v/<uuid:verification_id>/", views.verify, name="verify"),
    path("v/<uuid:verification_id>/code/", views.submit_code, name="submit_code"),
    path("v/<uuid:verification_id>/resend/", views.resend, name="resend"),
    path("v/<uuid:verification_id>/switch/", views.switch_channel, name="switch_channel"),
    path("v/<uuid:verification_id>/cancel/", views.cancel, name="cancel"),
    path("v/<uuid:verification_id>/wrong-number/", views.wrong_number, name="wrong_number"),
    path("v/<uuid:verification_id>/complete/", views.complete, name="complete"),
    path("silent/", views.silent_return, name="silent_return"),
    path("sandbox/", views.sandbox_inbox, name="sandbox_inbox"),
    path(
        "sandbox/silent/<str:request_id>/",
        views.sandbox_silent_auth,
        name="sandbox_silent_auth",
    ),
    path("webhooks/vonage/verify/", webhooks.vonage_verify, name="vonage_verify_webhook"),
]
