from __future__ import annotations

from django.http import HttpRequest


def two_factor(request: HttpRequest) -> dict[str, object]:
    return {"two_factor_verified": False}
