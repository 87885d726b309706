"""The remembered device's cookie (two_factor/services/devices.py holds the rules).

Signed with SECRET_KEY under its own salt, HttpOnly, SameSite=Lax, path /, and Secure
whenever the session cookie is (or the request came over HTTPS). It carries only the
device's current token, and the browser drops it when the device expires.
"""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest, HttpResponseBase
from django.utils import timezone

from two_factor.services.devices import DeviceToken

SALT = "two_factor.device_cookie"
# A request that a remembered device verified carries the device's new token here until
# its response sets the cookie (the protection decorator and mixin).
NEW_TOKEN_ATTRIBUTE = "_two_factor_device_token"  # noqa: S105 - an attribute name


def _max_age() -> int:
    return settings.TWO_FACTOR_REMEMBER_DAYS * 86400


def device_cookie_token(request: HttpRequest) -> str:
    """The token of the device cookie this request carries; "" when none, or when its
    signature is wrong (a tampered cookie stands for nothing)."""
    if settings.TWO_FACTOR_REMEMBER_DAYS == 0:
        return ""
    token = request.get_signed_cookie(
        settings.TWO_FACTOR_DEVICE_COOKIE_NAME, default="", salt=SALT, max_age=_max_age()
    )
    return token or ""


def device_cookie_set(
    request: HttpRequest, response: HttpResponseBase, device: DeviceToken
) -> None:
    seconds = int((device.expires_at - timezone.now()).total_seconds())
    response.set_signed_cookie(
        settings.TWO_FACTOR_DEVICE_COOKIE_NAME,
        device.token,
        salt=SALT,
        max_age=max(0, seconds),
        path="/",
        secure=settings.SESSION_COOKIE_SECURE or request.is_secure(),
        httponly=True,
        samesite="Lax",
    )


def device_cookie_delete(response: HttpResponseBase) -> None:
    response.delete_cookie(settings.TWO_FACTOR_DEVICE_COOKIE_NAME, path="/", samesite="Lax")


def device_cookie_renew(request: HttpRequest, response: HttpResponseBase) -> None:
    """Give the browser its device's new token, if a device verified this request."""
    device = request.__dict__.pop(NEW_TOKEN_ATTRIBUTE, None)
    if device is not None:
        device_cookie_set(request, response, device)
