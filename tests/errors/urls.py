"""The site's URLs plus views that fail on purpose, for the error pages' tests."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.http import HttpRequest, HttpResponse
from django.urls import path

from pollstr.urls import handler400, handler403, handler404, handler500, urlpatterns
from two_factor.limits import RateLimited


def bad_request(request: HttpRequest) -> HttpResponse:
    raise SuspiciousOperation("a malformed request")


def forbidden(request: HttpRequest) -> HttpResponse:
    raise PermissionDenied


def rate_limited(request: HttpRequest) -> HttpResponse:
    raise RateLimited(name="start_per_user", retry_after=120)


def broken(request: HttpRequest) -> HttpResponse:
    raise RuntimeError("a bug")


urlpatterns = [
    *urlpatterns,
    path("fail/400/", bad_request),
    path("fail/403/", forbidden),
    path("fail/429/", rate_limited),
    path("fail/500/", broken),
]
__all__ = ["handler400", "handler403", "handler404", "handler500", "urlpatterns"]
