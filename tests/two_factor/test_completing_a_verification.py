"""Completing a verification (services.verification_complete): only the verified
request of this session sets the flag, on a rotated session key."""

from __future__ import annotations

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from two_factor import services
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.services import AlreadyCompleted, VerificationRefused
from two_factor.session import SESSION_KEY, session_is_verified

pytestmark = pytest.mark.usefixtures("eager_tasks")


@pytest.fixture
def session() -> SessionStore:
    store = SessionStore()
    store["marker"] = "kept"
    store.save()
    return store


def test_completing_from_another_session_is_refused(user, phone, make_verification, session):
    verification = make_verification(Status.VERIFIED, session_key="some-other-session")

    with pytest.raises(VerificationRefused, match="belongs to another session"):
        services.verification_complete(verification=verification, session=session)

    verification.refresh_from_db()
    assert verification.status == Status.VERIFIED
    assert SESSION_KEY not in session


@pytest.mark.parametrize("status", [Status.SENT, Status.CHECKING, Status.FAILED])
def test_completing_an_unverified_verification_is_refused(
    user, phone, make_verification, session, status
):
    verification = make_verification(status, session_key=session.session_key)

    with pytest.raises(VerificationRefused, match="isn't finished yet"):
        services.verification_complete(verification=verification, session=session)

    assert SESSION_KEY not in session


def test_completing_consumes_it_rotates_the_session_key_and_sets_the_flag(
    user, phone, make_verification, session
):
    PhoneNumber.objects.filter(pk=phone.pk).update(verified_at=timezone.now())
    verification = make_verification(Status.VERIFIED, session_key=session.session_key)
    old_key = session.session_key

    services.verification_complete(verification=verification, session=session)

    verification.refresh_from_db()
    assert verification.status == Status.CONSUMED
    assert verification.consumed_at is not None
    assert session.session_key != old_key
    assert session["marker"] == "kept"
    user.refresh_from_db()
    assert session_is_verified(session=session, user=user)


def test_completing_the_row_as_read_consumes_it_without_reading_it_again(
    user, phone, make_verification, session
):
    """The usual completion: the write of `consumed` and its audit event are one
    statement (PostgreSQL) that takes the row's lock itself."""
    if connection.vendor != "postgresql":
        pytest.skip("one-statement transitions are PostgreSQL's; SQLite reads the row locked")
    verification = make_verification(Status.VERIFIED, session_key=session.session_key)
    verification = Verification.objects.select_related("user").get(pk=verification.pk)

    with CaptureQueriesContext(connection) as queries:
        services.verification_complete(verification=verification, session=session)

    statements = [query["sql"] for query in queries.captured_queries]
    assert not [sql for sql in statements if "FOR UPDATE" in sql]
    assert len([sql for sql in statements if sql.startswith("WITH written AS (UPDATE")]) == 1
    assert Verification.objects.get(pk=verification.pk).status == Status.CONSUMED
    assert verification.events.filter(to_status=Status.CONSUMED).count() == 1
    assert SESSION_KEY in session


def test_completing_a_copy_another_tab_consumed_meanwhile_is_refused(
    user, phone, make_verification, session
):
    """This page read the row verified; another tab consumed it since: nothing is written
    from the stale copy, and this session is not marked verified by it."""
    verification = make_verification(Status.VERIFIED, session_key=session.session_key)
    verification = Verification.objects.select_related("user").get(pk=verification.pk)
    Verification.objects.filter(pk=verification.pk).update(status=Status.CONSUMED)
    events = verification.events.count()

    with pytest.raises(AlreadyCompleted):
        services.verification_complete(verification=verification, session=session)

    assert verification.events.count() == events
    assert SESSION_KEY not in session
