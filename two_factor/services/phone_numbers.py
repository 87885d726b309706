"""Numbers: a typed number is pending until its code is verified; then it is the account's
(the one who proves ownership wins)."""

from __future__ import annotations

import functools
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext_noop
from phonenumber_field.phonenumber import PhoneNumber as ParsedNumber

from two_factor.models import (
    PhoneNumber,
)
from two_factor.numbers import NumberRefused, number_check, number_parse
from two_factor.services.devices import (
    NUMBER_CHANGED,
    NUMBER_MOVED_AWAY,
    device_number_hash,
    devices_forget,
)
from two_factor.services.refusals import VerificationRefused, _limit

NUMBER_MOVED = gettext_noop(
    "This number was linked to another account. You proved it's yours, so it is now "
    "linked to this one."
)


def number_accept(*, user: User, raw_number: str) -> ParsedNumber:
    """A typed number we may text a code to (the SMS-pumping rules), or a refusal.

    It binds to nothing: a typed number is only the pending number of the verification
    it starts, and becomes the account's number when its code is verified
    (`phone_number_bind`). So typing someone else's number blocks nobody, and the answer
    is the same for every valid mobile number, registered or not.
    """
    # Counted before any check, so trying number after number is limited too.
    _limit([("number_per_user", str(user.pk))])
    try:
        parsed = number_parse(raw=raw_number)
        number_check(number=parsed)
    except NumberRefused as refused:
        raise VerificationRefused(refused.message) from None
    return parsed


def phone_number_bind(*, user_id: Any, number: Any, at: Any) -> bool:
    """Make a number whose code was just verified the account's number.

    The one who proves ownership wins: the number leaves any other account (whose
    verified sessions and remembered devices end with it, see two_factor.session).
    The account's own devices remembered with another number end too. Returns whether
    it moved.
    """
    taken = PhoneNumber.objects.select_for_update().filter(number=number).exclude(user_id=user_id)
    losers = list(taken.values_list("user_id", flat=True))
    if losers:
        taken.delete()
        for loser in losers:
            devices_forget(user_id=loser, reason=NUMBER_MOVED_AWAY)
            # Their verified sessions end with the number: close their live sockets too.
            transaction.on_commit(functools.partial(_tell_sockets_access_changed, loser))
    moved = bool(losers)
    devices_forget(
        user_id=user_id, reason=NUMBER_CHANGED, unless_phone_hash=device_number_hash(number)
    )
    # One upsert on the account's row (update_or_create took two savepoints and a read).
    PhoneNumber.objects.bulk_create(
        [PhoneNumber(user_id=user_id, number=number, verified_at=at)],
        update_conflicts=True,
        unique_fields=["user"],
        update_fields=["number", "verified_at", "updated_at"],
    )
    return moved


def _tell_sockets_access_changed(user_id: Any) -> None:
    from two_factor.live import sockets_access_changed

    sockets_access_changed(user_id=user_id)
