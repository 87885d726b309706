"""Which phone numbers we are willing to text a code to.

This is the first line of defence against SMS pumping (toll fraud): attackers feed a
verification form premium-rate or otherwise revenue-sharing numbers and collect a
share of every SMS we pay for. So the rules are a default-deny on the number *type*
(only mobiles pass), plus an optional region allowlist:

- the input must look like a phone number (digits and the usual punctuation only);
- ``phonenumbers`` must consider it possible *and* valid for its region;
- with ``TWO_FACTOR_ALLOWED_REGIONS`` non-empty, its region must be listed (note that
  ``phonenumbers`` puts some +44 mobiles in GG/JE/IM, not GB);
- it must belong to a country: the non-geographic "international networks" (region
  ``001``: satellite phones on +870 Inmarsat and +881 Iridium/Globalstar, +882/+883
  international carriers, +800/+808/+979 global freephone, shared-cost and premium)
  are priced like premium numbers and a favourite of SMS pumping;
- its type must be ``MOBILE`` or ``FIXED_LINE_OR_MOBILE`` (what the US and a few others
  report for every number).

The last two are waived only when ``TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES`` is set.

What this module deliberately does *not* check is whether a number is already bound
to another account: the caller does that, and must answer in a way that does not
reveal whether the number exists here (otherwise the form becomes an oracle).

Settings are read at call time, never at import, so overriding them (tests do) takes
effect at once.
"""

from __future__ import annotations

import re

import phonenumbers
from django.conf import settings
from django.utils import translation
from django.utils.crypto import salted_hmac
from django.utils.translation import gettext, gettext_noop
from phonenumber_field.phonenumber import PhoneNumber
from phonenumbers import PhoneNumberFormat, PhoneNumberType, geocoder

from two_factor.fields import keep, number_key

__all__ = ["NumberRefused", "number_check", "number_hash", "number_mask", "number_parse"]

# Long enough for any real number with generous spacing; anything longer is junk or an
# attempt to make the parser do work.
MAX_INPUT_LENGTH = 32

# Digits (any script, the parser normalises them), whitespace and the punctuation
# people type in numbers. Letters are refused: they are either vanity numbers
# ("1-800-FLOWERS"), an extension ("ext. 12"), or not a number at all.
_ALLOWED_INPUT = re.compile(r"[\d\s+\-().\/]+")

_ACCEPTED_TYPES = frozenset({PhoneNumberType.MOBILE, PhoneNumberType.FIXED_LINE_OR_MOBILE})

# How each refused type is named to the person; a type missing here (e.g. UNKNOWN,
# TOLL_FREE) gets the generic sentence.
_TYPE_NAMES = {
    PhoneNumberType.PREMIUM_RATE: gettext_noop("premium-rate numbers"),
    PhoneNumberType.SHARED_COST: gettext_noop("shared-cost numbers"),
    PhoneNumberType.VOIP: gettext_noop("internet (VoIP) numbers"),
    PhoneNumberType.PERSONAL_NUMBER: gettext_noop("personal forwarding numbers"),
    PhoneNumberType.PAGER: gettext_noop("pagers"),
    PhoneNumberType.UAN: gettext_noop("company switchboard numbers"),
    PhoneNumberType.VOICEMAIL: gettext_noop("voicemail numbers"),
    PhoneNumberType.TOLL_FREE: gettext_noop("freephone numbers"),
}

# In English (the catalogues' msgids); NumberRefused says them in the active language.
ENTER_INTERNATIONAL = gettext_noop(
    "Enter your mobile number in international format, e.g. +44 7911 123456."
)
NOT_A_NUMBER = gettext_noop(
    "That doesn't look like a phone number. Enter it in international format, e.g. +44 7911 123456."
)
NEEDS_COUNTRY_CODE = gettext_noop(
    "Start your number with + and the country code, e.g. +44 7911 123456."
)
NOT_VALID = gettext_noop(
    "That doesn't look like a valid phone number. Check it and enter it in international "
    "format, e.g. +44 7911 123456."
)
LANDLINE = gettext_noop(
    "That looks like a landline, which can't receive text messages. Enter a mobile number instead."
)
NO_EXTENSION = gettext_noop(
    "Text messages can't reach an extension. Enter a mobile number without one."
)
INTERNATIONAL_NETWORK = gettext_noop(
    "We can't send codes to satellite or international network numbers. "
    "Enter a mobile number from a country network instead."
)
# phonenumbers' region for the country codes that belong to no country (UN M.49 "World").
NON_GEOGRAPHIC_REGION = "001"


class NumberRefused(Exception):
    """A number we won't send a code to; ``message`` is safe to show to the person, in
    the active language (the request's)."""

    def __init__(self, message: str) -> None:
        message = gettext(message)
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


def number_parse(*, raw: str, default_region: str | None = None) -> PhoneNumber:
    """Turn what a person typed into a ``PhoneNumber`` or refuse it.

    This only decides whether the input *is* a number; call ``number_check`` before
    sending anything to it. ``default_region`` lets national formats ("07911 123456")
    through; when it is None, ``PHONENUMBER_DEFAULT_REGION`` applies, as in the form
    field.
    """
    text = raw.strip()
    if not text:
        raise NumberRefused(ENTER_INTERNATIONAL)
    if len(text) > MAX_INPUT_LENGTH:
        too_long = gettext("That's too long for a phone number.")
        raise NumberRefused(f"{too_long} {gettext(ENTER_INTERNATIONAL)}")
    if not _ALLOWED_INPUT.fullmatch(text):
        only_digits = gettext("Use only digits, spaces and +.")
        raise NumberRefused(f"{only_digits} {gettext(ENTER_INTERNATIONAL)}")
    try:
        return PhoneNumber.from_string(text, region=default_region)
    except phonenumbers.NumberParseException as exc:
        if exc.error_type == phonenumbers.NumberParseException.INVALID_COUNTRY_CODE:
            raise NumberRefused(NEEDS_COUNTRY_CODE) from exc
        raise NumberRefused(NOT_A_NUMBER) from exc


def number_check(*, number: phonenumbers.PhoneNumber) -> None:
    """Refuse a number we must not text a code to (see the module docstring)."""
    if not phonenumbers.is_possible_number(number) or not phonenumbers.is_valid_number(number):
        raise NumberRefused(NOT_VALID)
    if number.extension:
        raise NumberRefused(NO_EXTENSION)

    allowed_regions = {region.upper() for region in settings.TWO_FACTOR_ALLOWED_REGIONS}
    if allowed_regions:
        region = phonenumbers.region_code_for_number(number)
        if region not in allowed_regions:
            language = translation.to_locale(translation.get_language() or "en")
            place = (
                geocoder.country_name_for_number(number, language)
                or geocoder.country_name_for_number(number, "en")
                or region
                or gettext("that country")
            )
            raise NumberRefused(
                gettext("We can't send codes to numbers in %(place)s yet.") % {"place": place}
            )

    if settings.TWO_FACTOR_ALLOW_RISKY_NUMBER_TYPES:
        return
    if phonenumbers.region_code_for_number(number) == NON_GEOGRAPHIC_REGION:
        raise NumberRefused(INTERNATIONAL_NETWORK)
    number_type = phonenumbers.number_type(number)
    if number_type in _ACCEPTED_TYPES:
        return
    if number_type == PhoneNumberType.FIXED_LINE:
        raise NumberRefused(LANDLINE)
    kind = _TYPE_NAMES.get(number_type)
    if kind is None:
        raise NumberRefused(
            gettext_noop(
                "We can't tell whether that number can receive text messages. "
                "Enter a mobile number instead."
            )
        )
    raise NumberRefused(
        gettext("We can't send codes to %(kind)s. Enter a mobile number instead.")
        % {"kind": gettext(kind)}
    )


_masks: dict[tuple[object, ...], str] = {}


def number_mask(number: phonenumbers.PhoneNumber) -> str:
    """The international format with only the country code and last 4 digits shown.

    Enough for a person to recognise their own number on screen or in an email,
    without the page disclosing it to someone looking over their shoulder. (Worked out
    once per process and number: every state change logs it, every status shows it.)
    """
    key = number_key(number)
    masked = _masks.get(key)
    if masked is None:
        masked = _mask(number)
        keep(_masks, key, masked)
    return masked


def _mask(number: phonenumbers.PhoneNumber) -> str:
    formatted = phonenumbers.format_number(number, PhoneNumberFormat.INTERNATIONAL)
    prefix = f"+{number.country_code}"
    national = formatted.removeprefix(prefix)
    masked: list[str] = []
    shown = 0
    # Walk from the right so the last 4 digits survive whatever the grouping is.
    for char in reversed(national):
        if char.isdigit():
            masked.append(char if shown < 4 else "•")
            shown += 1
        else:
            masked.append(char)
    return prefix + "".join(reversed(masked))


def number_hash(number: phonenumbers.PhoneNumber) -> str:
    """A keyed SHA-256 of the number's E.164 form, as hex.

    Lets a verified session be bound to a number without putting the number in the
    session; keyed with SECRET_KEY so the short space of phone numbers can't be
    brute-forced back from a leaked hash.
    """
    e164 = phonenumbers.format_number(number, PhoneNumberFormat.E164)
    return salted_hmac(
        "two_factor.numbers.number_hash", e164, secret=settings.SECRET_KEY, algorithm="sha256"
    ).hexdigest()


def number_destination(number: phonenumbers.PhoneNumber) -> tuple[str, str]:
    """Where a code to ``number`` goes, as the SMS budget counts it: its region ("GB",
    "ZZ" when it has none) and its mobile prefix, the country code and the first
    ``TWO_FACTOR_GOVERNOR["prefix_digits"]`` digits of the national number ("+44791")."""
    region = phonenumbers.region_code_for_number(number) or "ZZ"
    if not re.fullmatch(r"[A-Z]{2}", region):
        region = "ZZ"  # "001": the non-geographic networks
    national = phonenumbers.national_significant_number(number)
    digits = int(settings.TWO_FACTOR_GOVERNOR["prefix_digits"])
    return region, f"+{number.country_code}{national[:digits]}"


def region_name(region: str) -> str:
    """The region's English name as phonenumbers knows it ("France"), else its code."""
    example = phonenumbers.example_number(region)
    name = geocoder.country_name_for_number(example, "en") if example else ""
    return name or region
