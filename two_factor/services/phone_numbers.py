"""Numbers: a typed number is pending until its code is verified; then it is the account's
(the one who proves ownership wins)."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any, cast

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext_noop
from phonenumber_field.phonenumber import PhoneNumber as ParsedNumber

from two_factor.models import PhoneNumber, TrustedDevice
from two_factor.numbers import NumberRefused, number_check, number_parse
from two_factor.services.devices import (
    NUMBER_CHANGED,
    NUMBER_MOVED_AWAY,
    device_number_hash,
    devices_forget,
    devices_forgotten,
)
from two_factor.services.refusals import VerificationRefused, _limit

if TYPE_CHECKING:
    from django.db.models import Field

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
    if _bind_unless_held(user_id=user_id, number=number, at=at):
        return False
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


def _bind_unless_held(*, user_id: Any, number: Any, at: Any) -> bool:
    """The usual case, in one statement on PostgreSQL: no other account holds the number
    (it is new, or already this account's). The account's devices remembered with another
    number end and its row takes the number, as the locked path below would do, the
    holder's row locked first, in the caller's transaction. False, having written
    nothing, when another account holds the number (the locked path then moves it) or on
    another database. The three statements it stands for cost a check task ~1.4 ms of
    CPU, Django compiling each of them every time (docs/ARCHITECTURE.md, "Throughput")."""
    if connection.vendor != "postgresql":
        return False
    now = timezone.now()
    phone, device = PhoneNumber._meta, TrustedDevice._meta
    values = [
        # The holder of the number, unless it is this account.
        (phone.get_field("number"), number),
        (phone.get_field("user"), user_id),
        # The account's devices remembered with another number (`devices_forget`).
        (device.get_field("revoked_at"), now),
        (device.get_field("revoked_reason"), NUMBER_CHANGED),
        (device.get_field("user"), user_id),
        (device.get_field("expires_at"), now),
        (device.get_field("phone_hash"), device_number_hash(number)),
        # The account's row, as the locked path's upsert writes it.
        (phone.get_field("user"), user_id),
        (phone.get_field("number"), number),
        (phone.get_field("verified_at"), at),
        (phone.get_field("created_at"), now),
        (phone.get_field("updated_at"), now),
    ]
    params = [
        cast("Field[Any, Any]", field).get_db_prep_value(value, connection, prepared=False)
        for field, value in values
    ]
    with connection.cursor() as cursor:
        cursor.execute(_bind_sql(connection.vendor), params)
        held_elsewhere, ended, _bound = cursor.fetchone()
    if held_elsewhere:
        return False
    devices_forgotten(user_id=user_id, ended=ended, reason=NUMBER_CHANGED)
    return True


@functools.cache
def _bind_sql(vendor: str) -> str:
    """`_bind_unless_held`'s statement, from the models' own table and column names, each
    value cast to its column's type (the server binds them); its parameters in the order
    of that function's values."""
    quote = connection.ops.quote_name
    phone, device = PhoneNumber._meta, TrustedDevice._meta

    def column(meta: Any, name: str) -> str:
        return quote(meta.get_field(name).column)

    def value(meta: Any, name: str) -> str:
        return f"CAST(%s AS {meta.get_field(name).cast_db_type(connection)})"

    phones, devices = quote(phone.db_table), quote(device.db_table)
    inserted = ("user", "number", "verified_at", "created_at", "updated_at")
    updated = ("number", "verified_at", "updated_at")
    return " ".join(
        [
            f"WITH holder AS (SELECT {column(phone, 'user')} FROM {phones}",  # noqa: S608 (names from the models)
            f"WHERE {column(phone, 'number')} = {value(phone, 'number')} FOR UPDATE),",
            "elsewhere AS (SELECT 1 FROM holder",
            f"WHERE {column(phone, 'user')} <> {value(phone, 'user')}),",
            f"ended AS (UPDATE {devices}",
            f"SET {column(device, 'revoked_at')} = {value(device, 'revoked_at')},",
            f"{column(device, 'revoked_reason')} = {value(device, 'revoked_reason')}",
            f"WHERE {column(device, 'user')} = {value(device, 'user')}",
            f"AND {column(device, 'revoked_at')} IS NULL",
            f"AND {column(device, 'expires_at')} > {value(device, 'expires_at')}",
            f"AND {column(device, 'phone_hash')} <> {value(device, 'phone_hash')}",
            "AND NOT EXISTS (SELECT 1 FROM elsewhere) RETURNING 1),",
            f"bound AS (INSERT INTO {phones}",
            f"({', '.join(column(phone, name) for name in inserted)})",
            f"SELECT {', '.join(value(phone, name) for name in inserted)}",
            "WHERE NOT EXISTS (SELECT 1 FROM elsewhere)",
            f"ON CONFLICT ({column(phone, 'user')}) DO UPDATE SET",
            ", ".join(f"{column(phone, n)} = EXCLUDED.{column(phone, n)}" for n in updated),
            "RETURNING 1)",
            "SELECT EXISTS (SELECT 1 FROM elsewhere), (SELECT count(*) FROM ended),",
            "(SELECT count(*) FROM bound)",
        ]
    )


def _tell_sockets_access_changed(user_id: Any) -> None:
    from two_factor.live import sockets_access_changed

    sockets_access_changed(user_id=user_id)
