"""Enforces the verified flag on every view declared protected (two_factor.protection)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse

from two_factor.device_cookie import device_cookie_renew
from two_factor.protection import is_protected, verification_redirect

__all__ = ["VerifiedSessionMiddleware", "verification_redirect"]


class VerifiedSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        # A remembered device verified this request (process_view): its new token.
        device_cookie_renew(request, response)
        return response

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        if not is_protected(view_func):
            return None
        return verification_redirect(request)
