"""Rows the scenarios start from, written straight into the bench database in bulk:
voters, verified sessions (what completing a verification leaves behind), verifications
already sent or still queued, and one poll."""

from __future__ import annotations

import itertools
import random
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from benchmarks.infra import PASSWORD

# French mobiles (+33 6…), unique per call so the double never sees two live requests for
# one number. All of +33 61… and 62… are mobiles for phonenumbers; not all of +33 6 is
# (639… and 690–694… are not, and a run that counted into them failed a voter's submit
# with "That doesn't look like a valid phone number"). A run uses tens of thousands.
NUMBERS_FIRST, NUMBERS_END = 10_000_000, 30_000_000
_numbers = itertools.count(random.randrange(NUMBERS_FIRST, NUMBERS_END - 2_000_000))
_usernames = itertools.count(1)


def next_number() -> str:
    return f"+336{next(_numbers):08d}"


@dataclass(frozen=True)
class Voter:
    username: str
    number: str
    user_id: int = 0
    session_key: str = ""


def voters_create(count: int, *, tag: str) -> list[Voter]:
    """``count`` accounts without a phone number (the flow adds one)."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password

    user_model = get_user_model()
    hashed = make_password(PASSWORD)
    names = [f"{tag}-{next(_usernames)}" for _ in range(count)]
    user_model.objects.bulk_create(
        [user_model(username=name, password=hashed) for name in names], batch_size=1000
    )
    ids = dict(user_model.objects.filter(username__in=names).values_list("username", "pk"))
    return [Voter(username=name, number=next_number(), user_id=ids[name]) for name in names]


def verified_voters_create(count: int, *, tag: str) -> list[Voter]:
    """Accounts with a verified number and a logged-in, phone-verified session each."""
    from django.utils import timezone

    from two_factor.models import PhoneNumber

    voters = voters_create(count, tag=tag)
    now = timezone.now()
    PhoneNumber.objects.bulk_create(
        [PhoneNumber(user_id=v.user_id, number=v.number, verified_at=now) for v in voters],
        batch_size=1000,
    )
    return sessions_create(voters, verified=True)


def logged_in_voters_create(count: int, *, tag: str) -> list[Voter]:
    """Accounts without a number, each with a logged-in session (not verified)."""
    return sessions_create(voters_create(count, tag=tag), verified=False)


def sessions_create(voters: list[Voter], *, verified: bool) -> list[Voter]:
    """A database session per voter, logged in (and phone-verified if ``verified``),
    exactly as Django's login and Pollstr's completion view leave it."""
    import phonenumbers
    from django.conf import settings
    from django.contrib.auth import (
        BACKEND_SESSION_KEY,
        HASH_SESSION_KEY,
        SESSION_KEY,
        get_user_model,
    )
    from django.contrib.sessions.models import Session
    from django.utils import timezone
    from django.utils.crypto import get_random_string

    from two_factor.session import session_verify

    now = timezone.now()
    users = get_user_model().objects.in_bulk([v.user_id for v in voters])
    store_class = _session_store_class(settings.SESSION_ENGINE)
    backend = settings.AUTHENTICATION_BACKENDS[0]
    sessions, keyed = [], []
    for voter in voters:
        user = users[voter.user_id]
        data = _NewSession(
            {
                SESSION_KEY: str(user.pk),
                BACKEND_SESSION_KEY: backend,
                HASH_SESSION_KEY: user.get_session_auth_hash(),
            }
        )
        if verified:
            number = phonenumbers.parse(voter.number)
            session_verify(session=data, user=user, number=number)
        key = get_random_string(32, "abcdefghijklmnopqrstuvwxyz0123456789")
        sessions.append(
            Session(
                session_key=key,
                session_data=store_class().encode(data),
                expire_date=now + timedelta(days=1),
            )
        )
        keyed.append(Voter(voter.username, voter.number, voter.user_id, key))
    Session.objects.bulk_create(sessions, batch_size=1000)
    return keyed


class _NewSession(dict[str, Any]):
    """Session data not stored yet: its key is drawn afterwards, so verifying it has no
    key to rotate (session_verify rotates a live session's key before the flag)."""

    def cycle_key(self) -> None:
        pass


def _session_store_class(engine: str) -> Any:
    from importlib import import_module

    return import_module(engine).SessionStore


def verifications_create(voters: list[Voter], *, status: str) -> list[str]:
    """One verification per voter, bound to the voter's session, in ``status``
    (``queued``: waiting for its send task; ``sent``: the code is out)."""
    from django.conf import settings
    from django.utils import timezone

    from two_factor.models import Verification, session_key_hash

    now = timezone.now()
    sent = status == "sent"
    rows = [
        Verification(
            user_id=voter.user_id,
            session_key_hash=session_key_hash(voter.session_key or voter.username),
            number=voter.number,
            status=status,
            request_id=f"bench-{index}-{voter.user_id}" if sent else "",
            workflow=list(settings.TWO_FACTOR_WORKFLOW),
            channel="sms" if sent else "",
            send_attempts=1 if sent else 0,
            created_at=now,
            sent_at=now if sent else None,
            channel_deadline=now + timedelta(minutes=30) if sent else None,
            deadline_at=now + timedelta(minutes=30),
        )
        for index, voter in enumerate(voters)
    ]
    Verification.objects.bulk_create(rows, batch_size=1000)
    return [str(row.pk) for row in rows]


def phones_create(voters: list[Voter]) -> None:
    """Unverified numbers (what a queued verification's user has)."""
    from two_factor.models import PhoneNumber

    PhoneNumber.objects.bulk_create(
        [PhoneNumber(user_id=v.user_id, number=v.number) for v in voters], batch_size=1000
    )


def poll_create() -> tuple[int, str]:
    """An open poll with three choices: (id, text)."""
    from polls.models import Choice, Question

    question = Question.objects.create(text="Which figure matters most")
    Choice.objects.bulk_create(
        [Choice(question=question, text=text) for text in ("Latency", "Throughput", "Both")]
    )
    return question.pk, question.text


def first_choice_id(question_id: int) -> int:
    from polls.models import Choice

    return int(Choice.objects.filter(question_id=question_id).order_by("id")[0].pk)
