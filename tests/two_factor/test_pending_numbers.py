"""A number belongs to an account only once its code is verified: typing one binds
nothing, blocks nobody and tells nothing; the one who proves ownership wins."""

from __future__ import annotations

import pytest
from django.utils import timezone

from tests.phone_numbers import NUMBER, OTHER_NUMBER
from tests.two_factor.verifications import latest_code
from two_factor import services
from two_factor.models import PhoneNumber, Status, Verification
from two_factor.services import VerificationRefused
from two_factor.session import session_is_verified, session_verify

pytestmark = pytest.mark.usefixtures("eager_tasks")


def _start(user, number, capture, session_key="key-1"):
    typed = services.number_accept(user=user, raw_number=number)
    with capture(execute=True):
        verification = services.verification_start(
            user=user, session_key=session_key, ip=None, number=typed
        )
    verification.refresh_from_db()
    return verification


def _enter(verification, code, capture):
    with capture(execute=True):
        services.verification_submit_code(verification=verification, code=code, ip=None)
    verification.refresh_from_db()
    return verification


def test_accepting_a_typed_number_stores_nothing(user):
    number = services.number_accept(user=user, raw_number="+44 7911 123456")

    assert number.as_e164 == NUMBER
    assert not PhoneNumber.objects.exists()


@pytest.mark.parametrize("raw", ["", "not a number", "+44 20 7946 0958", "+1", "+8816 3123 4567"])
def test_a_number_the_rules_refuse_gets_a_sentence(user, raw):
    with pytest.raises(VerificationRefused) as refused:
        services.number_accept(user=user, raw_number=raw)

    assert refused.value.message.endswith(".")


def test_another_accounts_number_is_answered_like_any_other(
    user, make_user, django_capture_on_commit_callbacks
):
    owner = make_user("bob")
    PhoneNumber.objects.create(user=owner, number=NUMBER, verified_at=timezone.now())

    verification = _start(user, NUMBER, django_capture_on_commit_callbacks)

    # No refusal, no hint: a code goes out, as for a number nobody has.
    assert verification.status == Status.SENT
    assert PhoneNumber.objects.get(number=NUMBER).user == owner


def test_a_squatter_who_never_verifies_blocks_nobody_and_the_owner_wins(
    user, make_user, django_capture_on_commit_callbacks
):
    squatter, owner = make_user("mallory"), user
    squatted = _start(squatter, NUMBER, django_capture_on_commit_callbacks, session_key="m")

    mine = _start(owner, NUMBER, django_capture_on_commit_callbacks, session_key="o")

    # The provider allows one live request per number: the owner's start adopts it (the
    # code went to the owner's phone either way), and the squatter's row ends with it.
    assert mine.status == Status.SENT
    assert Verification.objects.get(pk=squatted.pk).status == Status.CANCELLED
    mine = _enter(mine, latest_code(NUMBER), django_capture_on_commit_callbacks)
    assert mine.status == Status.VERIFIED
    assert PhoneNumber.objects.get(number=NUMBER).user == owner
    assert not PhoneNumber.objects.filter(user=squatter).exists()


def test_proving_a_number_another_account_holds_moves_it_and_says_so(
    user, make_user, django_capture_on_commit_callbacks, client
):
    old_owner = make_user("bob")
    held = PhoneNumber.objects.create(user=old_owner, number=NUMBER, verified_at=timezone.now())
    old_session = client.session
    session_verify(session=old_session, user=old_owner, number=held.number)
    assert session_is_verified(session=old_session, user=old_owner)

    verification = _start(user, NUMBER, django_capture_on_commit_callbacks)
    verification = _enter(verification, latest_code(NUMBER), django_capture_on_commit_callbacks)

    assert verification.status == Status.VERIFIED
    assert verification.notice == services.NUMBER_MOVED
    assert PhoneNumber.objects.get(number=NUMBER).user == user
    old_owner.refresh_from_db()
    assert not session_is_verified(session=old_session, user=old_owner)


def test_a_mistyped_new_number_keeps_the_verified_one_and_the_session(
    user, client, django_capture_on_commit_callbacks
):
    held = PhoneNumber.objects.create(user=user, number=NUMBER, verified_at=timezone.now())
    session = client.session
    session_verify(session=session, user=user, number=held.number)

    typo = _start(user, OTHER_NUMBER, django_capture_on_commit_callbacks)
    services.verification_cancel(verification=typo, ip=None)

    phone = PhoneNumber.objects.get(user=user)
    assert (phone.number, phone.verified_at is not None) == (NUMBER, True)
    user.refresh_from_db()
    assert session_is_verified(session=session, user=user)


def test_the_new_number_replaces_the_old_one_once_verified(
    user, django_capture_on_commit_callbacks
):
    PhoneNumber.objects.create(user=user, number=NUMBER, verified_at=timezone.now())

    verification = _start(user, OTHER_NUMBER, django_capture_on_commit_callbacks)
    _enter(verification, latest_code(OTHER_NUMBER), django_capture_on_commit_callbacks)

    assert PhoneNumber.objects.get(user=user).number == OTHER_NUMBER
    assert not PhoneNumber.objects.filter(number=NUMBER).exists()


def test_a_resend_is_marked_so_the_page_can_say_older_codes_no_longer_work(
    user, phone, settings, django_capture_on_commit_callbacks
):
    settings.TWO_FACTOR_RESEND_COOLDOWN = 0
    with django_capture_on_commit_callbacks(execute=True):
        first = services.verification_start(user=user, session_key="k", ip=None)
        second = services.verification_start(user=user, session_key="k", ip=None)

    assert (first.is_resend, second.is_resend) == (False, True)


def _bind(user, number):
    from django.db import connection, transaction
    from django.test.utils import CaptureQueriesContext

    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        moved = services.phone_number_bind(user_id=user.pk, number=number, at=timezone.now())
    return moved, [query["sql"] for query in queries.captured_queries]


def test_binding_a_number_nobody_else_holds_is_one_statement(user):
    """A check task's bind: the holder locked, the account's devices of another number
    ended and its row written, in one statement, new row or changed number alike."""
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("the one-statement bind is PostgreSQL's; SQLite takes the locked path")

    moved, statements = _bind(user, NUMBER)
    assert not moved
    assert len(statements) == 1
    assert statements[0].startswith("WITH holder AS")
    first = PhoneNumber.objects.get(user=user)
    assert first.number == NUMBER
    assert first.verified_at is not None

    moved, statements = _bind(user, OTHER_NUMBER)
    assert not moved
    assert len(statements) == 1
    second = PhoneNumber.objects.get(user=user)
    assert (second.pk, second.number) == (first.pk, OTHER_NUMBER)
    assert second.created_at == first.created_at
    assert second.verified_at > first.verified_at
    assert second.updated_at > first.updated_at


def test_a_number_another_account_holds_is_moved_by_the_locked_path(user, make_user):
    """The statement writes nothing while another account holds the number; the locked
    path then moves it (the one who proves ownership wins)."""
    from django.db import connection

    other = make_user("holder")
    PhoneNumber.objects.create(user=other, number=NUMBER, verified_at=timezone.now())

    moved, statements = _bind(user, NUMBER)

    assert moved
    assert PhoneNumber.objects.get(number=NUMBER).user_id == user.pk
    assert not PhoneNumber.objects.filter(user=other).exists()
    if connection.vendor == "postgresql":
        assert statements[0].startswith("WITH holder AS")  # tried first, wrote nothing
        assert any(sql.startswith("DELETE") for sql in statements[1:])
