"""The pages a person sees when a request fails: the site's header, a sentence that says
what happened and what to do, and a way back (pollstr/urls.py names the handlers;
settings.CSRF_FAILURE_VIEW the CSRF one).

Each status is one entry of ``PAGES``. The 500 page renders without the request's
context: whatever failed (the database, say) must not be touched again to draw it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.core.exceptions import DisallowedHost
from django.http import HttpRequest, HttpResponse
from django.template.loader import render_to_string
from django.urls import Resolver404, resolve
from django.utils.cache import add_never_cache_headers
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from pollstr.safe_redirect import safe_next_url
from two_factor.limits import RateLimited
from two_factor.models import TERMINAL_STATUSES, Status, Verification

if TYPE_CHECKING:
    from django_stubs_ext import StrOrPromise  # types only: a development dependency

TEMPLATE = "errors/page.html"


@dataclass(frozen=True)
class ErrorPage:
    # Lazy: said in the language of the request that fails.
    title: StrOrPromise
    message: StrOrPromise


PAGES: dict[int, ErrorPage] = {
    400: ErrorPage(
        _("That request didn't make sense"),
        _("Something in the request was malformed. Go back and try again."),
    ),
    403: ErrorPage(
        _("You can't open this page"),
        _(
            "Your account doesn't have access to it. If you think it should, sign in with "
            "the account that does."
        ),
    ),
    404: ErrorPage(
        _("Page not found"),
        _(
            "There's nothing at this address. The link may be mistyped, or the page may "
            "have been removed."
        ),
    ),
    429: ErrorPage(_("Too many attempts"), _("Please wait a little, then try again.")),
    500: ErrorPage(
        _("Something went wrong on our side"),
        _(
            "It isn't anything you did, and we've been told about it. Please try again in "
            "a few minutes."
        ),
    ),
}
CSRF_PAGE = ErrorPage(
    _("This form has expired"),
    _(
        "The page you sent it from was open too long, or your browser blocked our cookie. "
        "Go back, reload the page and send the form again."
    ),
)
# Back to a code page after the code was used (the session key was rotated then, so the
# page is no longer this session's): say what happened instead of "not found".
FINISHED_CODE_PAGE = ErrorPage(
    _("This code page has closed"),
    _(
        "You already verified your phone with this code, so there is nothing left to do "
        "here. Carry on voting."
    ),
)
ENDED_CODE_PAGE = ErrorPage(
    _("This code request has ended"),
    _("That code can no longer be used. Ask for a new code if you still need one."),
)


def _back_url(request: HttpRequest) -> str:
    """The page the person came from, when it is one of ours. Not this very page for a
    GET (a link to itself); for a POST it is the form to reload and send again."""
    try:
        referer = safe_next_url(request, request.headers.get("Referer"), "")
        if request.method == "GET" and referer in (request.path, request.build_absolute_uri()):
            return ""
    except DisallowedHost:
        return ""  # the 400 for a host not ours: no way back to compute, and no second error
    return referer


def _render(
    request: HttpRequest, page: ErrorPage, *, status: int, with_request: bool = True
) -> HttpResponse:
    context: dict[str, Any] = {"page": page, "status": status, "back_url": _back_url(request)}
    if with_request:
        html = render_to_string(TEMPLATE, context, request=request)
    else:
        # base.html's context processors (session, user) never run; the header leaves
        # out what would need them.
        html = render_to_string(TEMPLATE, {**context, "bare": True})
    response = HttpResponse(html, status=status)
    add_never_cache_headers(response)
    return response


def bad_request(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _render(request, PAGES[400], status=400)


def permission_denied(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _render(request, PAGES[403], status=403)


def page_not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    return _render(request, _code_page_gone(request) or PAGES[404], status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    return _render(request, PAGES[500], status=500, with_request=False)


def csrf_failure(request: HttpRequest, reason: str = "") -> HttpResponse:
    return _render(request, CSRF_PAGE, status=403)


def too_many_requests(request: HttpRequest, limited: RateLimited) -> HttpResponse:
    page = ErrorPage(
        PAGES[429].title, gettext("Please wait %(wait)s, then try again.") % {"wait": limited.wait}
    )
    response = _render(request, page, status=429)
    response["Retry-After"] = str(limited.retry_after)
    return response


class RateLimitedMiddleware:
    """A rate limit no view turned into a sentence of its own gets the 429 page."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if isinstance(exception, RateLimited):
            return too_many_requests(request, exception)
        return None


def _code_page_gone(request: HttpRequest) -> ErrorPage | None:
    """The page to show instead of "not found" when this is one of the person's own code
    pages from an earlier session (Back after verifying lands here)."""
    user = getattr(request, "user", None)
    if request.method != "GET" or user is None or not user.is_authenticated:
        return None
    try:
        match = resolve(request.path_info)
    except Resolver404:
        return None
    verification_id = match.kwargs.get("verification_id")
    if match.namespace != "two_factor" or verification_id is None:
        return None
    status = (
        Verification.objects.filter(pk=verification_id, user=user)
        .values_list("status", flat=True)
        .first()
    )
    if status in (Status.VERIFIED, Status.CONSUMED):
        return FINISHED_CODE_PAGE
    if status in TERMINAL_STATUSES:
        return ENDED_CODE_PAGE
    return None
