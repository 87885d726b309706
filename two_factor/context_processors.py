from __future__ import annotations

from django.http import HttpRequest

from two_factor.session import session_is_verified


def two_factor(request: HttpRequest) -> dict[str, object]:
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {"two_factor_verified": False}
    return {"two_factor_verified": session_is_verified(session=request.session, user=user)}
