"""The vote's phone hash has keys of its own (VOTE_HASH_KEYS), versioned: rotating
SECRET_KEY or adding a vote key never lets a phone vote twice in one poll."""

from __future__ import annotations

import importlib

import phonenumbers
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from polls.models import Vote
from polls.phone_hashes import LEGACY_VERSION, phone_hash_current, phone_hashes_all
from polls.services import PhoneAlreadyVoted, vote_cast
from pollstr.env import env_keys
from tests.phone_numbers import NUMBER, OTHER_NUMBER, give_phone
from tests.two_factor.verifications import create_verification
from two_factor.models import PhoneNumber, Status
from two_factor.numbers import number_hash

V1 = ("v1", "k" * 40)
V2 = ("v2", "n" * 40)


def _vote_from(user, question, number=NUMBER):
    PhoneNumber.objects.update_or_create(
        user=user, defaults={"number": number, "verified_at": timezone.now()}
    )
    return vote_cast(user=user, question=question, choice_id=question.choices.first().pk)


def _number_moves_to(user, number=NUMBER):
    PhoneNumber.objects.filter(number=number).delete()
    PhoneNumber.objects.create(user=user, number=number, verified_at=timezone.now())


def test_a_vote_is_keyed_with_the_newest_vote_key_not_the_secret_key(settings, question, make_user):
    settings.VOTE_HASH_KEYS = [V2, V1]
    vote = _vote_from(make_user("first"), question)

    assert vote.phone_hash_version == "v2"
    assert vote.phone_hash == phone_hash_current(NUMBER).value
    assert vote.phone_hash != number_hash(phonenumbers.parse(NUMBER))


def test_rotating_the_secret_key_does_not_let_the_phone_vote_again(settings, question, make_user):
    settings.VOTE_HASH_KEYS = [V1]
    _vote_from(make_user("first"), question)
    settings.SECRET_KEY = "a-new-secret-key-after-rotation"
    second = make_user("second")
    _number_moves_to(second)

    with pytest.raises(PhoneAlreadyVoted):
        vote_cast(user=second, question=question, choice_id=question.choices.first().pk)


def test_a_new_key_in_front_keeps_the_votes_of_the_older_key_counted(settings, question, make_user):
    settings.VOTE_HASH_KEYS = [V1]
    _vote_from(make_user("first"), question)
    settings.VOTE_HASH_KEYS = [V2, V1]
    second = make_user("second")
    _number_moves_to(second)

    with pytest.raises(PhoneAlreadyVoted):
        vote_cast(user=second, question=question, choice_id=question.choices.first().pk)
    assert Vote.objects.filter(question=question).count() == 1


def test_a_key_taken_off_the_list_no_longer_finds_its_votes(settings, question, make_user):
    """Why docs/OPERATIONS.md says to keep a key listed while its votes matter."""
    settings.VOTE_HASH_KEYS = [V1]
    _vote_from(make_user("first"), question)
    settings.VOTE_HASH_KEYS = [V2]
    second = make_user("second")
    _number_moves_to(second)

    vote_cast(user=second, question=question, choice_id=question.choices.first().pk)

    assert Vote.objects.filter(question=question).count() == 2


def test_a_legacy_vote_keyed_with_the_secret_key_still_counts(settings, question, make_user):
    settings.VOTE_HASH_KEYS = [V1]
    first = make_user("first")
    Vote.objects.create(
        user=first,
        question=question,
        choice=question.choices.first(),
        phone_hash=number_hash(phonenumbers.parse(NUMBER)),
        phone_hash_version=LEGACY_VERSION,
    )
    second = make_user("second")
    _number_moves_to(second)

    with pytest.raises(PhoneAlreadyVoted):
        vote_cast(user=second, question=question, choice_id=question.choices.first().pk)


def test_every_listed_key_and_the_legacy_one_are_compared(settings):
    settings.VOTE_HASH_KEYS = [V2, V1]

    hashes = phone_hashes_all(NUMBER)

    assert len(set(hashes)) == 3
    assert hashes[0] == phone_hash_current(NUMBER).value
    assert hashes[-1] == number_hash(phonenumbers.parse(NUMBER))


def test_rekeying_moves_votes_of_known_numbers_and_reports_the_rest(
    settings, question, make_user, capsys
):
    settings.VOTE_HASH_KEYS = [V1]
    _vote_from(make_user("known"), question)
    gone = make_user("gone")
    _vote_from(gone, question, number=OTHER_NUMBER)
    PhoneNumber.objects.filter(user=gone).delete()  # nothing holds that number any more
    settings.VOTE_HASH_KEYS = [V2, V1]

    call_command("rekey_vote_hashes")

    known, left = Vote.objects.get(user__username="known"), Vote.objects.get(user=gone)
    assert (known.phone_hash_version, known.phone_hash) == ("v2", phone_hash_current(NUMBER).value)
    assert left.phone_hash_version == "v1"
    assert "1 vote(s) stay under an older key" in capsys.readouterr().out


@pytest.mark.parametrize(
    "raw",
    [
        "k" * 40,  # no version
        "v1:short",
        "v1:" + "k" * 40 + ",v1:" + "n" * 40,
        "legacy:" + "k" * 40,
        "v 1:" + "k" * 40,
    ],
    ids=["no version", "short key", "version twice", "reserved version", "space in version"],
)
def test_a_malformed_vote_hash_keys_stops_start_up(monkeypatch, raw):
    monkeypatch.setenv("VOTE_HASH_KEYS", raw)

    with pytest.raises(ImproperlyConfigured, match="VOTE_HASH_KEYS"):
        env_keys("VOTE_HASH_KEYS", reserved=frozenset({LEGACY_VERSION}))


def test_vote_hash_keys_are_read_newest_first(monkeypatch):
    monkeypatch.setenv("VOTE_HASH_KEYS", f" v2:{'n' * 40} , v1:{'k' * 40}")

    assert env_keys("VOTE_HASH_KEYS") == [V2, V1]


def test_the_migration_rekeys_the_votes_it_can_and_marks_the_rest_legacy(
    settings, question, make_user
):
    """The data step of polls 0003 on the historical models, as `migrate` runs it."""
    settings.VOTE_HASH_KEYS = [V1]
    migration = importlib.import_module("polls.migrations.0003_vote_hash_keys")
    held, verified_once, gone = make_user("held"), make_user("verified"), make_user("gone")
    give_phone(held, NUMBER)
    create_verification(user=verified_once, status=Status.CONSUMED, number=OTHER_NUMBER)
    unknown = "+447911000001"
    legacy = {n: number_hash(phonenumbers.parse(n)) for n in (NUMBER, OTHER_NUMBER, unknown)}
    choice = question.choices.first()
    for user, number in [(held, NUMBER), (verified_once, OTHER_NUMBER), (gone, unknown)]:
        # As polls 0002 stored them: keyed with SECRET_KEY, no version.
        Vote.objects.create(user=user, question=question, choice=choice, phone_hash=legacy[number])
    state = MigrationExecutor(connection).loader.project_state(("polls", "0003_vote_hash_keys"))

    migration.rekey_votes(state.apps, None)

    stored = {v.user.username: (v.phone_hash_version, v.phone_hash) for v in Vote.objects.all()}
    assert stored == {
        "held": ("v1", phone_hash_current(NUMBER).value),
        "verified": ("v1", phone_hash_current(OTHER_NUMBER).value),
        "gone": (LEGACY_VERSION, legacy[unknown]),
    }


def test_without_vote_hash_keys_start_up_warns_that_votes_hang_on_the_secret_key(settings):
    from polls.checks import vote_hash_keys_check

    settings.VOTE_HASH_KEYS = []
    assert [m.id for m in vote_hash_keys_check(None)] == ["polls.W001"]
    assert phone_hash_current(NUMBER).version == LEGACY_VERSION

    settings.VOTE_HASH_KEYS = [V1]
    assert vote_hash_keys_check(None) == []


def test_the_poll_page_finds_a_vote_the_phone_cast_under_an_older_key(
    settings, question, make_user
):
    from polls.services import vote_find

    settings.VOTE_HASH_KEYS = [V1]
    _vote_from(make_user("first"), question)
    settings.VOTE_HASH_KEYS = [V2, V1]
    second = make_user("second")
    _number_moves_to(second)

    past = vote_find(user=second, question=question)

    assert past is not None
    assert past.choice is None  # the other account's choice stays its own
    settings.VOTE_HASH_KEYS = [V2]
    assert vote_find(user=type(second).objects.get(pk=second.pk), question=question) is None
