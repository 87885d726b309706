"""Which pages need a phone-verified session: declared on each view, never in a list.

- `@verified_session_required` (function views) and `VerifiedSessionRequiredMixin`
  (class-based views) mark a view as protected and enforce the mark: they are the only
  place a request is refused for want of verification (django-otp's `otp_required`).
  `VerifiedSessionMiddleware` only attaches `request.is_verified()`, the one predicate
  (`two_factor.session`), which they ask; without the middleware a protected view
  fails closed (ImproperlyConfigured), it never serves the page.
- `@verification_not_required` marks a view as deliberately open to unverified sessions.
  tests/test_protection.py walks every URL pattern: a polls view that is neither is a
  failing test, and every protected view must refuse an unverified session, so nothing
  new is public by accident.
- Where a session goes once verified (the number page's `next`) waits in the session
  (`next_remember`) until the completion follows it (two_factor/views.py).
- An unverified session whose browser carries a remembered device's cookie is verified
  by the device instead of being sent for a code (two_factor/services/devices.py); the
  response then carries the device's new token.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode, urlsplit

from django.contrib.auth.models import User
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import ImproperlyConfigured
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import Resolver404, resolve, reverse
from django_htmx.http import HttpResponseClientRedirect

from pollstr.safe_redirect import safe_next_url
from two_factor.device_cookie import NEW_TOKEN_ATTRIBUTE, device_cookie_renew, device_cookie_token
from two_factor.services.devices import device_verify

View = Callable[..., HttpResponse]

PROTECTED = "verified_session_required"
OPEN = "verification_not_required"
# The page a verification goes on to, in the session (next_remember).
NEXT_SESSION_KEY = "two_factor_next"
# [verification id, the page its completion went on to]: a repeated completion (the page's
# automatic Continue and a click on it, a second click) goes to the same page.
COMPLETED_SESSION_KEY = "two_factor_completed"


def verified_session_required(view: View) -> View:
    @wraps(view)
    def protected(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = verification_redirect(request)
        if refusal is not None:
            return refusal
        response = view(request, *args, **kwargs)
        device_cookie_renew(request, response)
        return response

    setattr(protected, PROTECTED, True)
    return protected


def verification_not_required(view: View) -> View:
    setattr(view, OPEN, True)
    return view


class VerifiedSessionRequiredMixin:
    """Require a logged-in, phone-verified session before dispatching."""

    verified_session_required = True

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = verification_redirect(request)
        if refusal is not None:
            return refusal
        response: HttpResponse = super().dispatch(request, *args, **kwargs)  # type: ignore[misc]
        device_cookie_renew(request, response)
        return response


def is_protected(view: Any) -> bool:
    return bool(
        getattr(view, PROTECTED, False)
        or getattr(getattr(view, "view_class", None), PROTECTED, False)
    )


def is_declared_open(view: Any) -> bool:
    return bool(
        getattr(view, OPEN, False) or getattr(getattr(view, "view_class", None), OPEN, False)
    )


def verification_redirect(request: HttpRequest) -> HttpResponse | None:
    """Where this request must go before it may see a protected page, or None."""
    is_verified = getattr(request, "is_verified", None)
    if is_verified is None:
        raise ImproperlyConfigured(
            "A protected view needs two_factor.middleware.VerifiedSessionMiddleware in "
            "MIDDLEWARE (after the authentication middleware) to tell a verified session."
        )
    next_url = request.get_full_path()
    if request.method != "GET":
        # A POST can't be replayed after a redirect: come back to the page it came from
        # (htmx names it; a plain form post has the same-origin Referer).
        referer_path = request.headers.get("HX-Current-URL") or request.headers.get("Referer") or ""
        next_url = _same_site_path(request, referer_path) or next_url
    if not request.user.is_authenticated:
        target = redirect_to_login(next_url)["Location"]
    elif is_verified() or _verified_by_remembered_device(request):
        return None
    else:
        target = _number_page(next_url)
    if getattr(request, "htmx", False):
        return HttpResponseClientRedirect(target)
    return HttpResponseRedirect(target)


def first_stop(request: HttpRequest, url: str) -> str:
    """Where a signed-in browser sent to ``url`` (a path of this site) is sent first: the
    number page, when ``url`` is a protected page, the session is not verified and no
    remembered device can verify it there (the page's own decision, made when it is
    asked for); else ``url``. A sign-in answers with it, so the browser does not ask for
    a page only to be redirected (one request less a voter: benchmarks/README.md). The
    number page's answer also keeps ``url`` in the session (``next_remember``), as the
    number page itself would: the sign-in writes the session anyway."""
    is_verified = getattr(request, "is_verified", None)
    if is_verified is None or not request.user.is_authenticated or device_cookie_token(request):
        return url
    try:
        view = resolve(urlsplit(url).path).func
    except (Resolver404, ValueError):
        return url  # not one of our pages (a script prefix, say): it decides for itself
    if not is_protected(view) or is_verified():
        return url
    next_remember(request, url)
    return _number_page(url)


def next_remember(request: HttpRequest, url: str) -> None:
    """Keep ``url`` (if it is a page of this site) as where the session goes once it is
    verified. Written only when it changes: a session write is a database UPDATE and a
    cache write, and the number page asks again for what the sign-in already kept."""
    target = safe_next_url(request, url, "")
    if request.session.get(NEXT_SESSION_KEY) != target:
        request.session[NEXT_SESSION_KEY] = target


def _number_page(next_url: str) -> str:
    return f"{reverse('two_factor:start')}?{urlencode({'next': next_url})}"


def _verified_by_remembered_device(request: HttpRequest) -> bool:
    """A remembered device verifies the session instead of a code; its new token waits on
    the request for the response's cookie (device_cookie_renew)."""
    token, user = device_cookie_token(request), request.user
    if not token or not isinstance(user, User):
        return False
    device = device_verify(session=request.session, user=user, token=token)
    if device is None:
        return False
    setattr(request, NEW_TOKEN_ATTRIBUTE, device)
    return True


def _same_site_path(request: HttpRequest, url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[" and other unparseable headers: no way back, not a 500
        return ""
    if parts.netloc and parts.netloc != request.get_host():
        return ""
    return parts.path + (f"?{parts.query}" if parts.query else "")
