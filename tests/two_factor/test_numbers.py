from __future__ import annotations

import phonenumbers
import pytest
from phonenumber_field.phonenumber import PhoneNumber
from phonenumbers import PhoneNumberFormat, PhoneNumberType

from two_factor.numbers import (
    NumberRefused,
    number_check,
    number_hash,
    number_mask,
    number_parse,
)

GB_MOBILE = "+44 7911 123456"


def accept(raw: str, default_region: str | None = None) -> PhoneNumber:
    number = number_parse(raw=raw, default_region=default_region)
    number_check(number=number)
    return number


def refusal(raw: str, default_region: str | None = None) -> str:
    with pytest.raises(NumberRefused) as info:
        accept(raw, default_region)
    assert str(info.value) == info.value.message
    return info.value.message


def example(region: str, number_type: int) -> str:
    number = phonenumbers.example_number_for_type(region, number_type)
    assert number is not None, f"phonenumbers has no {number_type} example for {region}"
    return phonenumbers.format_number(number, PhoneNumberFormat.E164)


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("+33 6 12 34 56 78", "+33612345678"),
        ("+49 151 12345678", "+4915112345678"),
        (GB_MOBILE, "+447911123456"),
        ("+1 415 555 0123", "+14155550123"),
    ],
)
def test_valid_mobiles_are_accepted(raw: str, e164: str) -> None:
    number = accept(raw)
    assert isinstance(number, PhoneNumber)
    assert number.as_e164 == e164


def test_us_numbers_are_accepted_although_they_may_be_landlines() -> None:
    number = accept("+1 415 555 0123")
    assert phonenumbers.number_type(number) == PhoneNumberType.FIXED_LINE_OR_MOBILE


def test_national_format_is_accepted_with_a_default_region() -> None:
    assert accept("07911 123456", default_region="GB").as_e164 == "+447911123456"
    assert accept("06 12 34 56 78", default_region="FR").as_e164 == "+33612345678"


def test_national_format_without_a_default_region_asks_for_the_country_code() -> None:
    assert "country code" in refusal("07911 123456")


def test_uk_drama_range_is_refused_as_invalid() -> None:
    assert "valid phone number" in refusal("+44 7700 900123")


@pytest.mark.parametrize(
    ("region", "number_type", "words"),
    [
        ("GB", PhoneNumberType.PREMIUM_RATE, "premium-rate"),
        ("FR", PhoneNumberType.SHARED_COST, "shared-cost"),
        ("GB", PhoneNumberType.VOIP, "VoIP"),
        ("GB", PhoneNumberType.PERSONAL_NUMBER, "personal"),
        ("GB", PhoneNumberType.PAGER, "pager"),
        ("GB", PhoneNumberType.UAN, "switchboard"),
        ("DE", PhoneNumberType.VOICEMAIL, "voicemail"),
        ("GB", PhoneNumberType.TOLL_FREE, "freephone"),
    ],
)
def test_risky_number_types_are_refused(region: str, number_type: int, words: str) -> None:
    message = refusal(example(region, number_type))
    assert words in message
    assert "Enter a mobile number" in message


def test_gb_voip_example_is_in_the_056_range() -> None:
    assert example("GB", PhoneNumberType.VOIP).startswith("+4456")


def test_landline_is_refused_with_a_sentence_asking_for_a_mobile() -> None:
    message = refusal(example("GB", PhoneNumberType.FIXED_LINE))
    assert message == (
        "That looks like a landline, which can't receive text messages. "
        "Enter a mobile number instead."
    )


@pytest.mark.parametrize(
    ("region", "number_type"),
    [
        ("GB", PhoneNumberType.PREMIUM_RATE),
        ("FR", PhoneNumberType.SHARED_COST),
        ("GB", PhoneNumberType.VOIP),
        ("GB", PhoneNumberType.FIXED_LINE),
    ],
)
def test_risky_number_types_are_accepted_when_the_setting_allows(
    settings, region: str, number_type: int
) -> None:
    settings.TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES = True
    accept(example(region, number_type))


def test_risky_setting_still_refuses_invalid_numbers(settings) -> None:
    settings.TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES = True
    refusal("+44 7700 900123")


def test_region_allowlist_accepts_listed_regions_and_names_the_others(settings) -> None:
    settings.TWO_FACTOR_ALLOWED_REGIONS = ["FR", "us"]
    accept("+33 6 12 34 56 78")
    accept("+1 415 555 0123")
    assert refusal("+49 151 12345678") == "We can't send codes to numbers in Germany yet."


def test_region_allowlist_treats_guernsey_mobiles_as_not_gb(settings) -> None:
    # phonenumbers puts +44 7911 in Guernsey: an operator allowing GB must say so too.
    settings.TWO_FACTOR_ALLOWED_REGIONS = ["GB"]
    accept(example("GB", PhoneNumberType.MOBILE))
    assert refusal(GB_MOBILE) == "We can't send codes to numbers in Guernsey yet."
    settings.TWO_FACTOR_ALLOWED_REGIONS = ["GB", "GG"]
    accept(GB_MOBILE)


def test_empty_region_allowlist_allows_every_region(settings) -> None:
    settings.TWO_FACTOR_ALLOWED_REGIONS = []
    accept("+49 151 12345678")


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "abc",
        "+",
        "++44",
        "1" * 40,
        "+44 7911 12345678901",
        "<script>",
        "+44 7911 123456 ext. 12",
        "1-800-FLOWERS",
        "tel:+447911123456",
        "+44 7911 123456;ext=1",
        "+44 7911 123456\x00",
        "١٢٣",
    ],
)
def test_garbage_is_refused_with_a_sentence(raw: str) -> None:
    message = refusal(raw)
    assert message.endswith(".")
    assert message[0].isupper()


def test_empty_input_asks_for_the_international_format() -> None:
    assert refusal("  ") == (
        "Enter your mobile number in international format, e.g. +44 7911 123456."
    )


def test_surrounding_whitespace_is_ignored() -> None:
    assert accept(f"  {GB_MOBILE}\n").as_e164 == "+447911123456"


def test_number_check_refuses_a_stored_number_that_is_no_longer_allowed(settings) -> None:
    number = number_parse(raw="+49 151 12345678")
    number_check(number=number)
    settings.TWO_FACTOR_ALLOWED_REGIONS = ["FR"]
    with pytest.raises(NumberRefused):
        number_check(number=number)


@pytest.mark.parametrize(
    ("raw", "masked"),
    [
        (GB_MOBILE, "+44 •••• ••3456"),
        ("+33 6 12 34 56 78", "+33 • •• •• 56 78"),
        ("+1 415 555 0123", "+1 •••-•••-0123"),
        ("+49 151 12345678", "+49 •••• •••5678"),
    ],
)
def test_masking_keeps_the_country_code_and_only_the_last_four_digits(
    raw: str, masked: str
) -> None:
    assert number_mask(number_parse(raw=raw)) == masked


def test_hash_is_stable_for_the_same_number_however_it_was_typed() -> None:
    typed = number_hash(number_parse(raw=GB_MOBILE))
    assert typed == number_hash(number_parse(raw="07911123456", default_region="GB"))
    assert len(typed) == 64
    assert int(typed, 16) >= 0


def test_hash_differs_per_number() -> None:
    assert number_hash(number_parse(raw=GB_MOBILE)) != number_hash(
        number_parse(raw="+44 7911 123457")
    )


def test_hash_differs_per_secret_key(settings) -> None:
    number = number_parse(raw=GB_MOBILE)
    before = number_hash(number)
    settings.SECRET_KEY = "another-secret-key-for-this-test"
    assert number_hash(number) != before


def test_hash_does_not_contain_the_number() -> None:
    assert "7911123456" not in number_hash(number_parse(raw=GB_MOBILE))


# Satellite (Inmarsat +870, Iridium +8816), international carriers (+882, +883) and the
# global freephone range: numbers that belong to no country.
INTERNATIONAL_NETWORKS = [
    "+870 773 111 632",
    "+8816 3123 4567",
    "+8818 1234 5678",
    "+883 1400 0000",
    "+882 1360 0000",
]


@pytest.mark.parametrize("raw", INTERNATIONAL_NETWORKS)
def test_satellite_and_international_network_numbers_are_refused(raw: str) -> None:
    assert "satellite or international network" in refusal(raw)


def test_an_iridium_number_is_refused_although_phonenumbers_calls_it_a_mobile() -> None:
    number = number_parse(raw="+8816 3123 4567")
    assert phonenumbers.number_type(number) == PhoneNumberType.MOBILE
    assert "satellite" in refusal("+8816 3123 4567")


@pytest.mark.parametrize("raw", INTERNATIONAL_NETWORKS)
def test_international_network_numbers_are_accepted_when_the_setting_allows(
    settings, raw: str
) -> None:
    settings.TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES = True
    accept(raw)
