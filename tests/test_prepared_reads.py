"""pollstr.db.prepared: a prepared read returns what the queryset it stands for returns,
and save_fields writes what save(update_fields=...) writes, on the database the suite
runs on (SQLite or PostgreSQL), each compiling its SQL once."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import DatabaseError, connection, transaction
from django.db.models import F, signals
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from pollstr.db.prepared import PreparedRead, row_insert, save_fields
from tests.phone_numbers import give_phone
from tests.two_factor.verifications import create_verification
from two_factor.models import PhoneNumber, Status, Verification

pytestmark = pytest.mark.django_db


def _columns(row: object) -> dict[str, object]:
    return {field.attname: getattr(row, field.attname) for field in Verification._meta.fields}


def test_a_row_reads_as_the_queryset_reads_it(user: AbstractBaseUser) -> None:
    made = create_verification(
        user=user,
        status=Status.SENT,
        channel="sms",
        request_id="req-1",
        session_key="the-session",
    )
    read = PreparedRead(Verification, "pk")

    prepared = read.get(made.pk)
    orm = Verification.objects.get(pk=made.pk)

    assert _columns(prepared) == _columns(orm)
    # The columns Django converts come back converted: JSON, the phone number type.
    assert prepared.workflow == orm.workflow
    assert isinstance(prepared.workflow, list)
    assert type(prepared.number) is type(orm.number)
    assert prepared._state.adding is False
    assert prepared._state.db == "default"
    # A saved instance updates its row as any other would.
    prepared.notice = "changed"
    prepared.save(update_fields=["notice"])
    assert Verification.objects.get(pk=made.pk).notice == "changed"


def test_values_are_bound_by_their_fields(user: AbstractBaseUser) -> None:
    made = create_verification(user=user, session_key="the-session")
    from two_factor.models import session_key_hash

    own = PreparedRead(Verification, "pk", "user", "session_key_hash")

    assert own.get(str(made.pk), user.pk, session_key_hash("the-session")).pk == made.pk
    assert own.first(made.pk, user.pk, session_key_hash("another-session")) is None
    assert own.first(uuid.uuid4(), user.pk, session_key_hash("the-session")) is None


def test_no_row_and_too_many_rows_are_the_querysets_errors(user: AbstractBaseUser) -> None:
    create_verification(user=user, status=Status.FAILED)
    create_verification(user=user, status=Status.FAILED)

    with pytest.raises(Verification.DoesNotExist):
        PreparedRead(Verification, "pk").get(uuid.uuid4())
    with pytest.raises(Verification.MultipleObjectsReturned):
        PreparedRead(Verification, "user").get(user.pk)
    assert len(PreparedRead(Verification, "user").all(user.pk)) == 2


def test_an_integer_its_column_cannot_hold_finds_no_row(user: AbstractBaseUser) -> None:
    # As Django's exact lookup: no row and no statement, not the database's range error.
    give_phone(user)
    by_owner = PreparedRead(PhoneNumber, "user")
    assert by_owner.get(user.pk).user_id == user.pk
    with CaptureQueriesContext(connection) as queries:
        assert by_owner.all(2**63) == []
        assert by_owner.first(-(2**63) - 1) is None
    assert queries.captured_queries == []


def test_a_one_to_one_reads_by_its_owner(user: AbstractBaseUser) -> None:
    read = PreparedRead(PhoneNumber, "user")
    assert read.first(user.pk) is None

    give_phone(user)

    assert read.get(user.pk).number == PhoneNumber.objects.get(user=user).number


def test_the_sql_is_compiled_once_and_each_read_is_one_statement(user: AbstractBaseUser) -> None:
    first = create_verification(user=user, status=Status.FAILED)
    second = create_verification(user=user, status=Status.FAILED)
    read = PreparedRead(Verification, "pk")
    read.get(first.pk)

    with (
        mock.patch.object(
            SQLCompiler, "as_sql", autospec=True, wraps=SQLCompiler.as_sql
        ) as compiles,
        CaptureQueriesContext(connection) as queries,
    ):
        assert read.get(second.pk).pk == second.pk
        assert read.get(first.pk).pk == first.pk

    assert compiles.call_count == 0
    assert len(queries.captured_queries) == 2


def test_a_locked_read_takes_the_row_lock(user: AbstractBaseUser) -> None:
    made = create_verification(user=user)
    with transaction.atomic(), CaptureQueriesContext(connection) as queries:
        PreparedRead(Verification, "pk", for_update=True).get(made.pk)
    sql = queries.captured_queries[-1]["sql"]
    assert ("FOR UPDATE" in sql) is connection.features.has_select_for_update


@pytest.mark.django_db(transaction=True)
def test_a_locked_read_outside_a_transaction_is_refused(user: AbstractBaseUser) -> None:
    made = create_verification(user=user)
    with pytest.raises(TransactionManagementError):
        PreparedRead(Verification, "pk", for_update=True).get(made.pk)


def test_only_columns_of_the_model_itself_can_be_named(db: None) -> None:
    with pytest.raises(ValueError, match="not a column"):
        PreparedRead(Verification, "events").get(1)  # a reverse relation
    with pytest.raises(TypeError, match="2 values expected"):
        PreparedRead(Verification, "pk", "user").get(uuid.uuid4())
    with pytest.raises(ValueError, match="at least one field"):
        PreparedRead(Verification)


def test_refine_compiles_its_constant_conditions_in(user: AbstractBaseUser) -> None:
    create_verification(user=user, status=Status.FAILED)
    live = create_verification(user=user, status=Status.SENT, channel="sms")
    read = PreparedRead(Verification, "user", refine=lambda rows: rows.live())

    assert [row.pk for row in read.all(user.pk)] == [live.pk]
    assert [row.pk for row in read.all(user.pk)] == list(
        Verification.objects.filter(user=user).live().values_list("pk", flat=True)
    )


# --- row_insert: the INSERT save() would run, for a caller's CTE ----------------------------


def test_a_row_insert_writes_the_row_save_would_write(user: AbstractBaseUser) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("row_insert is for PostgreSQL's data-modifying CTEs; elsewhere it is None")
    made = Verification(user=user, number="+33612345678", workflow=["sms", "voice"], step=0)
    insert = row_insert(made)
    assert insert is not None

    with connection.cursor() as cursor:
        cursor.execute(insert.sql, insert.params)
        assert cursor.fetchall() == [(made.pk,)]
    insert.written()

    assert made._state.adding is False
    assert made.created_at is not None  # pre_save (auto_now_add) ran on the instance
    stored = Verification.objects.get(pk=made.pk)
    assert {f.attname: getattr(stored, f.attname) for f in Verification._meta.concrete_fields} == {
        f.attname: getattr(made, f.attname) for f in Verification._meta.concrete_fields
    }


def test_a_row_insert_is_none_where_it_cannot_stand_for_save(user: AbstractBaseUser) -> None:
    if connection.vendor != "postgresql":
        assert row_insert(Verification(user=user, number="+33612345678")) is None
        return
    # The database assigns the key: save() reads it back, this statement does not.
    assert row_insert(PhoneNumber(user=user, number="+33612345678")) is None

    def receiver(**kwargs: object) -> None:
        pass

    signals.pre_save.connect(receiver, sender=Verification)
    try:
        assert row_insert(Verification(user=user, number="+33612345678")) is None
    finally:
        signals.pre_save.disconnect(receiver, sender=Verification)


# --- save_fields: save(update_fields=...) compiled once ------------------------------------


def test_saving_fields_writes_them_and_nothing_else(user: AbstractBaseUser) -> None:
    made = create_verification(user=user, status=Status.SENT, channel="sms", notice="before")
    stale = Verification.objects.get(pk=made.pk)
    Verification.objects.filter(pk=made.pk).update(wrong_codes=2)  # another writer
    before = stale.updated_at

    stale.status = Status.CHECKING
    stale.notice = ""
    stale.workflow = ["voice"]
    save_fields(stale, ["status", "notice", "workflow", "updated_at"])

    stored = Verification.objects.get(pk=made.pk)
    assert (stored.status, stored.notice, stored.workflow) == (Status.CHECKING, "", ["voice"])
    assert stored.wrong_codes == 2  # not among the fields: left as the other writer left it
    assert stale.updated_at > before  # auto_now ran, on the instance as save() does
    assert stored.updated_at == stale.updated_at


def test_saving_fields_sends_the_model_signals(user: AbstractBaseUser) -> None:
    made = create_verification(user=user)
    seen: list[tuple[str, object]] = []

    def pre(
        sender: object, instance: Verification, update_fields: object, **kwargs: object
    ) -> None:
        seen.append(("pre", update_fields))

    def post(sender: object, created: bool, update_fields: object, **kwargs: object) -> None:
        seen.append(("post", (created, update_fields)))

    signals.pre_save.connect(pre, sender=Verification)
    signals.post_save.connect(post, sender=Verification)
    try:
        save_fields(made, ["notice"])
    finally:
        signals.pre_save.disconnect(pre, sender=Verification)
        signals.post_save.disconnect(post, sender=Verification)

    assert seen == [("pre", frozenset({"notice"})), ("post", (False, frozenset({"notice"})))]


def test_saving_fields_compiles_once(user: AbstractBaseUser) -> None:
    first = create_verification(user=user, status=Status.FAILED)
    second = create_verification(user=user, status=Status.FAILED)
    save_fields(first, ["notice"])

    with (
        mock.patch.object(
            SQLCompiler, "as_sql", autospec=True, wraps=SQLCompiler.as_sql
        ) as compiles,
        CaptureQueriesContext(connection) as queries,
    ):
        second.notice = "x"
        save_fields(second, ["notice"])

    assert compiles.call_count == 0
    assert len(queries.captured_queries) == 1
    assert Verification.objects.get(pk=second.pk).notice == "x"


def test_saving_a_row_that_is_gone_is_an_error(user: AbstractBaseUser) -> None:
    made = create_verification(user=user)
    Verification.objects.filter(pk=made.pk).delete()
    with pytest.raises(DatabaseError, match="did not affect any rows"):
        save_fields(made, ["notice"])


def test_saving_fields_refuses_what_save_refuses(user: AbstractBaseUser) -> None:
    made = create_verification(user=user)
    with pytest.raises(ValueError, match="do not exist"):
        save_fields(made, ["events"])


def test_an_expression_goes_through_save(user: AbstractBaseUser) -> None:
    made = create_verification(user=user, status=Status.SENT, channel="sms")
    made.wrong_codes = F("wrong_codes") + 1
    save_fields(made, ["wrong_codes"])
    assert Verification.objects.get(pk=made.pk).wrong_codes == 1


def test_phone_number_of_reads_once_per_user_object_and_fills_the_relation(
    django_user_model, make_user
):
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from tests.phone_numbers import NUMBER, give_phone
    from two_factor.models import phone_number_of

    with_phone, without = make_user("with-phone"), make_user("without-phone")
    give_phone(with_phone, NUMBER)
    with_phone = django_user_model.objects.get(pk=with_phone.pk)
    without = django_user_model.objects.get(pk=without.pk)

    with CaptureQueriesContext(connection) as queries:
        phone = phone_number_of(with_phone)
        assert phone_number_of(with_phone) is phone
        assert with_phone.phone_number is phone  # the relation's own cache
        assert phone.user is with_phone
        assert phone_number_of(without) is None
        assert phone_number_of(without) is None
        assert not hasattr(without, "phone_number")  # Django's "does not exist", cached
    assert len(queries.captured_queries) == 2
    assert phone.number == NUMBER
