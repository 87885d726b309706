"""Attaches `request.is_verified()`; refuses nothing (django-otp's OTPMiddleware split).

Enforcement is declared on each view (`two_factor.protection`): the decorator and the
mixin ask `request.is_verified()` and redirect. The attribute is a callable, not a
value, so it is computed only when asked and always answers for the session as it is
then (a remembered device may verify the session during the request).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from django.http import HttpRequest, HttpResponse

from two_factor.session import request_is_verified


class VerifiedSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request.is_verified = partial(request_is_verified, request)  # type: ignore[attr-defined]
        return self.get_response(request)
