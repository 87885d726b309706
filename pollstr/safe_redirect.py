"""The one place that decides whether a `next` URL may be followed."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.http import HttpRequest
from django.utils.http import url_has_allowed_host_and_scheme


def safe_next_url(request: HttpRequest, candidate: str | None, fallback: str) -> str:
    """`candidate` when it is a URL into this site, otherwise `fallback`.

    Only a path from the root ("/polls/1/") or an absolute URL on this host passes: a
    bare word ("foo", "polls:index") is neither, and handing it to `redirect()` would
    make Django try it as a URL name.
    """
    if not candidate or "\\" in candidate or any(ord(c) < 32 for c in candidate):
        return fallback
    if not url_has_allowed_host_and_scheme(
        candidate, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return fallback
    if not urlsplit(candidate).path.startswith("/"):
        return fallback
    return candidate
