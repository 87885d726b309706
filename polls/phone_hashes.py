"""Which phone cast a vote, as a keyed hash: one vote per phone, never the number itself.

The key is ``VOTE_HASH_KEYS`` (versioned, newest first), apart from ``SECRET_KEY``: rotating
the secret that signs sessions must not let every phone vote again in old polls. A vote
stores its hash and the version of the key that made it. New votes use the newest key;
finding a phone's votes compares against its hash under every key listed, so adding a
key keeps the votes of the older ones counted.

Votes cast before ``VOTE_HASH_KEYS`` existed were keyed with ``SECRET_KEY``
(``two_factor.numbers.number_hash``); they carry the version ``legacy`` and are still
found while ``SECRET_KEY`` stays the same. ``vote_hashes_rekey`` moves votes whose number
is still known (an account's number, a verification's) to the newest key; the migration
that added versions ran it, and ``manage.py rekey_vote_hashes`` runs it after a rotation.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import phonenumbers
from django.conf import settings
from django.utils.crypto import salted_hmac

LEGACY_VERSION = "legacy"
# The salts are part of each hash: changing one orphans every vote stored under it.
_SALT = "polls.vote.phone_hash"
_LEGACY_SALT = "two_factor.numbers.number_hash"


@dataclass(frozen=True)
class PhoneHash:
    version: str
    value: str


def _keys() -> list[tuple[str, str, str]]:
    """(version, salt, key) newest first, the legacy SECRET_KEY last."""
    listed = [(version, _SALT, key) for version, key in settings.VOTE_HASH_KEYS]
    return [*listed, (LEGACY_VERSION, _LEGACY_SALT, str(settings.SECRET_KEY))]


def _e164(number: phonenumbers.PhoneNumber | str) -> str:
    if isinstance(number, str):
        return number
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def _digest(salt: str, key: str, e164: str) -> str:
    return salted_hmac(salt, e164, secret=key, algorithm="sha256").hexdigest()


def phone_hash_current(number: phonenumbers.PhoneNumber | str) -> PhoneHash:
    """The hash a new vote from this phone stores (the newest key)."""
    version, salt, key = _keys()[0]
    return PhoneHash(version=version, value=_digest(salt, key, _e164(number)))


def phone_hashes_all(number: phonenumbers.PhoneNumber | str) -> list[str]:
    """Every hash a vote from this phone may be stored under, one per key."""
    e164 = _e164(number)
    return [_digest(salt, key, e164) for _, salt, key in _keys()]


def known_numbers(*, phone_numbers: Any, verifications: Any) -> set[str]:
    """The E.164 numbers a vote may have come from that we still hold: the accounts'
    numbers and those of verified codes (managers of the two_factor models; historical
    ones in a migration)."""
    verified = verifications.filter(status__in=["verified", "consumed"])
    return {
        number.as_e164
        for source in (phone_numbers.all(), verified)
        for number in source.values_list("number", flat=True).distinct()
    }


def vote_hashes_rekey(*, votes: Any, numbers: Iterable[object]) -> tuple[int, int]:
    """Store the votes of ``votes`` (a Vote queryset, historical models too) whose phone is
    among ``numbers`` under the newest key. Returns (re-keyed, left under an older key)."""
    current_version = _keys()[0][0]
    known: dict[str, str] = {}
    for number in numbers:
        for value in phone_hashes_all(str(number)):
            known[value] = str(number)
    rekeyed = left = 0
    older = votes.exclude(phone_hash="").exclude(phone_hash_version=current_version)
    for vote in older.only("pk", "phone_hash", "phone_hash_version").iterator():
        found = known.get(vote.phone_hash)
        if found is None:
            if not vote.phone_hash_version:
                # Stored before versions existed: keyed with SECRET_KEY.
                votes.filter(pk=vote.pk).update(phone_hash_version=LEGACY_VERSION)
            left += 1
            continue
        new = phone_hash_current(found)
        votes.filter(pk=vote.pk).update(phone_hash=new.value, phone_hash_version=new.version)
        rekeyed += 1
    return rekeyed, left
