"""Enforces the verified flag on the protected views (settings.TWO_FACTOR_PROTECTED_URL_NAMES)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_htmx.http import HttpResponseClientRedirect

from two_factor.session import session_is_verified


class VerifiedSessionMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view_func: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        match = request.resolver_match
        if match is None or match.view_name not in settings.TWO_FACTOR_PROTECTED_URL_NAMES:
            return None
        return verification_redirect(request)


def verification_redirect(request: HttpRequest) -> HttpResponse | None:
    """Where this request must go before it may see a protected page, or None."""
    next_url = request.get_full_path()
    if request.method != "GET":
        # A POST can't be replayed after a redirect: come back to the page it came from
        # (htmx names it; a plain form post has the same-origin Referer).
        referer_path = request.headers.get("HX-Current-URL") or request.headers.get("Referer") or ""
        next_url = _same_site_path(request, referer_path) or next_url
    if not request.user.is_authenticated:
        target = redirect_to_login(next_url)["Location"]
    elif session_is_verified(session=request.session, user=request.user):
        return None
    else:
        target = f"{reverse('two_factor:start')}?{urlencode({'next': next_url})}"
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(target)
    return HttpResponseRedirect(target)


def _same_site_path(request: HttpRequest, url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[" and other unparseable headers: no way back, not a 500
        return ""
    if parts.netloc and parts.netloc != request.get_host():
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")
