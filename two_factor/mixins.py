"""The seed's class-based-view guard, kept for views outside the middleware's list."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse

from two_factor.middleware import verification_redirect


class TwoFactorMixin:
    """Require a logged-in, phone-verified session before dispatching."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return verification_redirect(request) or super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
