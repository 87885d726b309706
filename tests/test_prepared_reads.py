"""pollstr.db.prepared: a prepared read returns what the queryset it stands for returns,
on the database the suite runs on (SQLite or PostgreSQL), and compiles its SQL once."""

from __future__ import annotations

import uuid
from unittest import mock

import pytest
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection, transaction
from django.db.models.sql.compiler import SQLCompiler
from django.db.transaction import TransactionManagementError
from django.test.utils import CaptureQueriesContext

from pollstr.db.prepared import PreparedRead
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
    from two_factor.session import session_key_hash

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
