"""Remembered devices ("Remember this device" on the code page): a browser that verified
with a code verifies the account's later sessions without one, for
TWO_FACTOR_REMEMBER_DAYS (0 turns the feature off, devices already remembered included).

- The device's cookie carries a random token (signed by the view layer); its row holds
  only the token's SHA-256, so the table hands out no device.
- Every use replaces the token: a copied cookie works once, for whoever is first.
- A device stands in for a code only for its own account, and only while the number it
  was remembered with is still that account's verified number. The session it verifies
  is bound to that number, as a code's is, so a device is never a way around one vote
  per phone.
- It ends by its expiry, "Forget" on the account page, a password change, a number
  change, or the number moving to another account (`phone_number_bind`); deleting the
  account deletes it; the retention sweep deletes ended rows.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.crypto import constant_time_compare
from phonenumber_field.phonenumber import to_python

from pollstr import metrics
from pollstr.logs import log_event
from two_factor.models import PhoneNumber, TrustedDevice
from two_factor.numbers import number_hash
from two_factor.session import session_verify

logger = logging.getLogger("pollstr.devices")

# Why a device stopped working: the row keeps it until the retention sweep.
FORGOTTEN = "forgotten"
PASSWORD_CHANGED = "password changed"  # noqa: S105 - a reason, not a password
NUMBER_CHANGED = "number changed"
NUMBER_MOVED_AWAY = "number moved to another account"

# The first match names the browser and the system ("Chrome on Linux"); order matters,
# since Edge and Opera also say Chrome, Chrome says Safari, and Android says Linux.
_BROWSERS = (
    ("Edge", r"Edg(e|A|iOS)?/"),
    ("Opera", r"OPR/|Opera"),
    ("Firefox", r"Firefox/|FxiOS/"),
    ("Chrome", r"Chrome/|CriOS/"),
    ("Safari", r"Safari/"),
)
_SYSTEMS = (
    ("Android", r"Android"),
    ("iOS", r"iPhone|iPad|iPod"),
    ("ChromeOS", r"CrOS"),
    ("Windows", r"Windows"),
    ("macOS", r"Mac OS X|Macintosh"),
    ("Linux", r"Linux"),
)


@dataclass(frozen=True)
class DeviceToken:
    """A device's current token, for its cookie (the only copy), and when the device
    expires: a fixed moment from when it was remembered, however often it is used."""

    token: str
    expires_at: datetime


def device_token_hash(token: str) -> str:
    """What a row stores of its device's token: never the token itself."""
    return hashlib.sha256(token.encode()).hexdigest()


def device_number_hash(number: Any) -> str:
    """What a device keeps of the number it was remembered with (a parsed number or its
    E.164 text): the session flag's keyed hash."""
    return number_hash(to_python(number))


def device_label(user_agent: str) -> str:
    """ "Chrome on Linux": enough for a voter to tell their devices apart."""
    browser = next((name for name, pattern in _BROWSERS if re.search(pattern, user_agent)), "")
    system = next((name for name, pattern in _SYSTEMS if re.search(pattern, user_agent)), "")
    if browser and system:
        return f"{browser} on {system}"
    return browser or system or "A browser"


def device_remember(
    *, user: User, number: Any, user_agent: str, now: datetime | None = None
) -> DeviceToken:
    """Remember this browser for `user`, bound to the `number` it just verified."""
    now = now or timezone.now()
    token = secrets.token_urlsafe(32)
    device = TrustedDevice.objects.create(
        user=user,
        token_hash=device_token_hash(token),
        phone_hash=device_number_hash(number),
        label=device_label(user_agent),
        created_at=now,
        last_used_at=now,
        expires_at=now + timedelta(days=settings.TWO_FACTOR_REMEMBER_DAYS),
    )
    log_event(logger, "device.remembered", device=device.pk, user=device.user_id)
    return DeviceToken(token=token, expires_at=device.expires_at)


def device_verify(*, session: Any, user: User, token: str) -> DeviceToken | None:
    """Verify `session` with the device whose token this is, through the same writer a
    code uses (a new session key, then the flag, bound to the account's number), and
    give the device a new token. Returns the new token, or None when the token stands
    for nothing: unknown or used already, expired, forgotten, another account's, or
    remembered with a number that is no longer this account's."""
    if not token or settings.TWO_FACTOR_REMEMBER_DAYS == 0:
        return None
    phone = PhoneNumber.objects.filter(user=user, verified_at__isnull=False).first()
    if phone is None:
        return None
    now = timezone.now()
    new_token = secrets.token_urlsafe(32)
    with transaction.atomic():
        # Locked: two requests with the same token, only one uses it.
        device = (
            TrustedDevice.objects.active(now=now)
            .select_for_update()
            .filter(user=user, token_hash=device_token_hash(token))
            .first()
        )
        if device is None or not constant_time_compare(
            device.phone_hash, number_hash(phone.number)
        ):
            return None
        device.token_hash = device_token_hash(new_token)
        device.last_used_at = now
        device.times_used += 1
        device.save(update_fields=["token_hash", "last_used_at", "times_used"])
    session_verify(session=session, user=user, number=phone.number)
    metrics.CODES_SAVED.inc()
    log_event(logger, "device.used", device=device.pk, user=device.user_id)
    return DeviceToken(token=new_token, expires_at=device.expires_at)


def devices_forget(
    *,
    user_id: Any,
    reason: str,
    device_id: Any = None,
    unless_phone_hash: str | None = None,
) -> int:
    """End the account's remembered devices (one, with `device_id`; those bound to
    another number than `unless_phone_hash`; else all). Returns how many ended."""
    devices = TrustedDevice.objects.active().filter(user_id=user_id)
    if device_id is not None:
        devices = devices.filter(pk=device_id)
    if unless_phone_hash is not None:
        devices = devices.exclude(phone_hash=unless_phone_hash)
    ended = devices.update(revoked_at=timezone.now(), revoked_reason=reason)
    devices_forgotten(user_id=user_id, ended=ended, reason=reason)
    return ended


def devices_forgotten(*, user_id: Any, ended: int, reason: str) -> None:
    """Say that ``ended`` of the account's devices ended (nothing for none): for every
    statement that ends them (`devices_forget`; `phone_number_bind`'s own)."""
    if ended:
        log_event(logger, "device.forgotten", user=user_id, devices=ended, reason=reason)


def device_find(*, user: User, token: str) -> TrustedDevice | None:
    """The account's active device this token belongs to (the account page's "this
    device"); reads only."""
    if not token:
        return None
    devices = TrustedDevice.objects.active().filter(user=user)
    return devices.filter(token_hash=device_token_hash(token)).first()
