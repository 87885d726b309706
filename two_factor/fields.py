"""The phone number column: django-phonenumber-field's, with what it works out about a
number worked out once per process and number.

The library parses every number it reads (``from_db_value``), and checks and formats
every number it writes or compares in a query (``get_prep_value``: the phonenumbers
library's metadata patterns), tens of microseconds each time. A verification's state
change reads its row and writes it back guarded by every column it read
(pollstr/db/prepared.py): a send task parsed its one number twice and checked it four
times. Here each answer is kept per process, keyed by everything it depends on: the
stored text and the default region for a read; every attribute of the number and the
storage format for a write. The answers are the library's own, computed by it the first
time.

A read hands out a copy of the number it parsed (a number is a mutable object: one row's
must not change another's). At most ``KEPT`` answers of each kind are kept; past that
the table starts again.
"""

from __future__ import annotations

import copy
from typing import Any

from django.conf import settings
from phonenumber_field import modelfields
from phonenumber_field.phonenumber import PhoneNumber

KEPT = 4096

_read: dict[tuple[str, str | None], PhoneNumber] = {}
_written: dict[tuple[Any, ...], Any] = {}


def number_key(number: PhoneNumber) -> tuple[Any, ...]:
    """Every attribute of a phonenumbers number: two numbers with the same key are equal
    to the library in every way (validity, formats, the raw input kept)."""
    return (
        number.country_code,
        number.national_number,
        number.extension,
        number.italian_leading_zero,
        number.number_of_leading_zeros,
        number.raw_input,
        number.country_code_source,
        number.preferred_domestic_carrier_code,
    )


def keep(table: dict[Any, Any], key: Any, value: Any) -> None:
    """Put ``value`` in one of these per-process tables, which start again when full."""
    if len(table) >= KEPT:
        table.clear()
    table[key] = value


class PhoneNumberField(modelfields.PhoneNumberField):
    def deconstruct(self) -> Any:
        # The same column as the library's field, only cheaper in Python: migrations keep
        # naming the library's (a new class there would rebuild both tables on SQLite).
        name, _path, args, kwargs = super().deconstruct()
        return name, "phonenumber_field.modelfields.PhoneNumberField", args, kwargs

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> Any:
        if not isinstance(value, str) or not value:
            return super().from_db_value(value, expression, connection)
        key = (value, getattr(settings, "PHONENUMBER_DEFAULT_REGION", None))
        parsed = _read.get(key)
        if parsed is None:
            parsed = super().from_db_value(value, expression, connection)
            keep(_read, key, parsed)
        return copy.copy(parsed)

    def get_prep_value(self, value: Any) -> Any:
        if type(value) is not PhoneNumber:  # text, None, a subclass: the library's way
            return super().get_prep_value(value)
        key = (*number_key(value), getattr(settings, "PHONENUMBER_DB_FORMAT", "E164"))
        prepared = _written.get(key)
        if prepared is None:
            prepared = super().get_prep_value(value)
            keep(_written, key, prepared)
        return prepared
