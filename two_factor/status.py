"""The status partial: one context and one template fragment for the full page, htmx
polling and websocket pushes, so the three can never drift apart."""

from __future__ import annotations

from django.http import HttpRequest
from django.template.loader import render_to_string

from two_factor import services
from two_factor.forms import CodeForm
from two_factor.models import Status, Verification
from two_factor.timeline import verification_timeline

STATUS_TEMPLATE = "two_factor/verify.html#status"


def status_context(verification: Verification, *, error: str = "") -> dict[str, object]:
    services.verification_refresh(verification=verification)
    return {
        "verification": verification,
        "timeline": verification_timeline(verification),
        "resend_in": services.resend_available_in(verification),
        "call_in": (
            verification.seconds_until(verification.channel_deadline)
            if verification.status == Status.SENT
            else None
        ),
        "code_form": CodeForm(),
        "error": error,
    }


def status_render(request: HttpRequest, verification: Verification) -> str:
    return render_to_string(STATUS_TEMPLATE, status_context(verification), request=request)
