from __future__ import annotations

from django.http import HttpRequest


def two_factor(request: HttpRequest) -> dict[str, object]:
    # The middleware's answer; a request it never saw (an error page rendered further
    # out) shows as unverified.
    is_verified = getattr(request, "is_verified", None)
    return {"two_factor_verified": bool(is_verified and is_verified())}
