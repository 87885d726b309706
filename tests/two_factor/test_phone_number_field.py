"""two_factor.fields.PhoneNumberField: django-phonenumber-field's column, its answers kept
per process. Every answer must be the library's own, for every kind of value a column
meets (valid, invalid but stored as typed, empty, typed in national form), whichever
comes first; a number read is never shared between rows; the settings that change an
answer change it; and the column stays the library's in migrations."""

from __future__ import annotations

import pytest
from django.db import connection
from phonenumber_field import modelfields
from phonenumber_field.phonenumber import PhoneNumber, to_python

from two_factor import fields
from two_factor.models import PhoneNumber as PhoneNumberRow
from two_factor.models import Verification
from two_factor.numbers import _mask, number_mask

STORED = [
    "+447911123456",  # valid: stored in E.164
    "+33612345678",
    "+14155550123",
    "+4411",  # parses, not a valid number: stored as typed
    "not a number",  # does not parse: stored as typed
    "",
]
TYPED = ["07911 123456", "+44 7911 123456", "+33 6 12 34 56 78", "+4411", "nope", ""]


@pytest.fixture(autouse=True)
def _empty_tables():
    fields._read.clear()
    fields._written.clear()
    yield
    fields._read.clear()
    fields._written.clear()


def _library() -> modelfields.PhoneNumberField:
    return modelfields.PhoneNumberField()


def _same(a: object, b: object) -> bool:
    if isinstance(a, PhoneNumber) and isinstance(b, PhoneNumber):
        return fields.number_key(a) == fields.number_key(b) and type(a) is type(b)
    return a == b and type(a) is type(b)


@pytest.mark.parametrize("stored", STORED)
def test_a_read_is_the_librarys_first_and_every_time_after(stored: str) -> None:
    ours = Verification._meta.get_field("number")
    assert isinstance(ours, fields.PhoneNumberField)
    expected = _library().from_db_value(stored, None, connection)
    for _time in range(3):
        assert _same(ours.from_db_value(stored, None, connection), expected)


@pytest.mark.parametrize("typed", TYPED)
@pytest.mark.parametrize("region", [None, "GB"])
def test_a_write_is_the_librarys_whatever_was_typed(settings, typed: str, region) -> None:
    settings.PHONENUMBER_DEFAULT_REGION = region
    ours = Verification._meta.get_field("number")
    for value in (typed, to_python(typed), to_python(typed)):
        expected = _library().get_prep_value(value)
        assert _same(ours.get_prep_value(value), expected)
        assert _same(ours.get_prep_value(value), expected)  # the kept answer


def test_a_read_number_is_never_shared_between_rows() -> None:
    ours = Verification._meta.get_field("number")
    first = ours.from_db_value("+447911123456", None, connection)
    second = ours.from_db_value("+447911123456", None, connection)
    assert first is not second
    first.national_number = 7911999999  # one row's number changed in place
    assert second.national_number == 7911123456
    assert ours.from_db_value("+447911123456", None, connection).national_number == 7911123456


def test_a_number_changed_in_place_is_written_as_it_is_now() -> None:
    ours = Verification._meta.get_field("number")
    number = ours.from_db_value("+447911123456", None, connection)
    assert ours.get_prep_value(number) == "+447911123456"
    number.national_number = 7911654321
    number.raw_input = "+447911654321"
    assert ours.get_prep_value(number) == _library().get_prep_value(number) == "+447911654321"
    number.raw_input = "+447911123456"  # the library keeps to the text it parsed
    assert ours.get_prep_value(number) == _library().get_prep_value(number)


def test_the_storage_format_and_the_default_region_are_part_of_the_answer(settings) -> None:
    ours = Verification._meta.get_field("number")
    number = to_python("+447911123456")
    assert ours.get_prep_value(number) == "+447911123456"
    settings.PHONENUMBER_DB_FORMAT = "INTERNATIONAL"
    assert ours.get_prep_value(number) == "+44 7911 123456"
    # A national number read back depends on the region it is read in.
    settings.PHONENUMBER_DEFAULT_REGION = "GB"
    in_gb = ours.from_db_value("07911 123456", None, connection)
    settings.PHONENUMBER_DEFAULT_REGION = "FR"
    in_fr = ours.from_db_value("07911 123456", None, connection)
    assert in_gb.country_code == 44
    assert in_fr.country_code == 33


def test_the_tables_start_again_when_full(monkeypatch) -> None:
    monkeypatch.setattr(fields, "KEPT", 3)
    ours = Verification._meta.get_field("number")
    for index in range(10):
        ours.from_db_value(f"+4479111234{index:02d}", None, connection)
        ours.get_prep_value(to_python(f"+4479111234{index:02d}"))
    assert 1 <= len(fields._read) <= 3
    assert 1 <= len(fields._written) <= 3


@pytest.mark.parametrize("typed", ["+44 7911 123456", "+33 6 12 34 56 78", "+1 415 555 0123"])
def test_a_mask_is_worked_out_once_and_the_same(typed: str, monkeypatch) -> None:
    number = to_python(typed)
    expected = _mask(number)
    assert number_mask(number) == expected
    monkeypatch.setattr("two_factor.numbers._mask", lambda _number: pytest.fail("again"))
    assert number_mask(to_python(typed)) == expected


def test_migrations_keep_the_librarys_column() -> None:
    for model in (Verification, PhoneNumberRow):
        field = model._meta.get_field("number")
        _name, path, _args, kwargs = field.deconstruct()
        assert path == "phonenumber_field.modelfields.PhoneNumberField"
        rebuilt = modelfields.PhoneNumberField(**kwargs)
        assert rebuilt.db_type(connection) == field.db_type(connection)


@pytest.mark.django_db
def test_rows_round_trip_through_the_database() -> None:
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.create_user("field-user", password="x")
    row = PhoneNumberRow.objects.create(user=user, number="+44 7911 123456")
    read = PhoneNumberRow.objects.get(pk=row.pk)
    assert str(read.number) == "+447911123456"
    assert PhoneNumberRow.objects.filter(number=read.number).count() == 1
    assert PhoneNumberRow.objects.filter(number="+447911123456").count() == 1
    read.save()
    assert PhoneNumberRow.objects.get(pk=row.pk).number == read.number
