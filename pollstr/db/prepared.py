"""Hot reads whose SQL Django compiles once per process, then only binds new values.

Compiling a query is most of what a simple ORM read costs in Python: Django quotes and
joins every column of the model and walks the lookups each time. For the verification
row (26 columns) that is ~0.8 ms of CPU on our 2-core machine, against ~0.2 ms to run
the compiled statement and build the instance (``benchmarks/orm_cost.py``). A verified
voter reads that row about a dozen times across the web tier and the workers.

``PreparedRead(model, "pk", "user_id", for_update=True)`` is the read
``model._default_manager.filter(pk=…, user_id=…).select_for_update()``: Django's own
compiler writes its SQL the first time it runs on a database (every filter of the
default manager included), with a placeholder for each value, and keeps the column
converters Django would apply (JSON, phone numbers, SQLite's dates). Later calls bind
the values with the fields' own ``get_db_prep_value``, run the statement through
Django's cursor (so it is counted, logged and wrapped like any other) and build the
instances with ``Model.from_db``, as a queryset would.

``refine`` narrows or orders the queryset with what is the same on every call
(``refine=lambda rows: rows.live()``: constants only, compiled in with the rest).

Only equality on concrete fields of the model itself, and whole rows: anything else
stays a queryset.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, Generic, TypeVar

from django.db import DatabaseError, connections, models, router, transaction
from django.db.backends.base.operations import BaseDatabaseOperations
from django.db.models import signals
from django.db.models.expressions import Expression
from django.db.models.sql import Query
from django.db.models.sql.subqueries import InsertQuery, UpdateQuery
from django.db.transaction import TransactionManagementError

M = TypeVar("M", bound=models.Model)


class _Marker:
    """Where the i-th value goes in a compiled statement's parameters."""

    __slots__ = ("index",)

    def __init__(self, index: int) -> None:
        self.index = index


class _Slot(Expression):
    """A value bound at run time: compiles to one placeholder and a marker."""

    def __init__(self, index: int, field: models.Field[Any, Any]) -> None:
        super().__init__(output_field=field)
        self.index = index

    def as_sql(self, compiler: Any, connection: Any) -> Any:
        return "%s", (_Marker(self.index),)


@dataclass(frozen=True)
class _Compiled:
    sql: str
    params: tuple[Any, ...]
    # Column position → (converters, its expression), from Django's compiler.
    converters: dict[int, tuple[list[Any], Any]]
    # (value index, lowest, highest) of each value bound to an integer column.
    integer_ranges: tuple[tuple[int, int, int], ...]


class PreparedRead(Generic[M]):
    def __init__(
        self,
        model: type[M],
        *fields: str,
        for_update: bool = False,
        refine: Callable[[Any], models.QuerySet[M]] | None = None,
    ) -> None:
        if not fields:
            raise ValueError("a prepared read filters on at least one field")
        self.model = model
        self.names = fields
        self.for_update = for_update
        self.refine = refine
        self._compiled: dict[tuple[str, str], _Compiled] = {}

    @cached_property
    def fields(self) -> list[models.Field[Any, Any]]:
        # Looked up at first use: a module may build its reads before the models are ready.
        meta = self.model._meta
        fields = [meta.pk if name == "pk" else meta.get_field(name) for name in self.names]
        for field in fields:
            if not getattr(field, "concrete", False) or field.model is not self.model:
                raise ValueError(f"{self.model.__name__}.{field.name} is not a column of its table")
        return fields  # type: ignore[return-value]

    @cached_property
    def attnames(self) -> list[str]:
        return [field.attname for field in self.model._meta.concrete_fields]

    def all(self, *values: Any) -> list[M]:
        """Every row whose fields equal ``values`` (in the order the fields were named)."""
        if len(values) != len(self.fields):
            raise TypeError(f"{len(self.fields)} values expected, {len(values)} given")
        alias = (router.db_for_write if self.for_update else router.db_for_read)(self.model)
        connection = connections[alias]
        if self.for_update and connection.get_autocommit():
            # Django's own refusal: a row lock outside a transaction is released at once.
            raise TransactionManagementError(
                "select_for_update cannot be used outside of a transaction."
            )
        compiled = self._compiled.get((alias, connection.vendor))
        if compiled is None:
            compiled = self._compiled[(alias, connection.vendor)] = self._compile(alias)
        bound = [
            self._bind(value, field, connection)
            for value, field in zip(values, self.fields, strict=True)
        ]
        for index, low, high in compiled.integer_ranges:
            if bound[index] is not None and not low <= bound[index] <= high:
                # What Django's exact lookup does with an integer its column cannot hold
                # (a path's <int:…> has no bound): no row, not the database's error.
                return []
        params = [
            bound[param.index] if isinstance(param, _Marker) else param for param in compiled.params
        ]
        with connection.cursor() as cursor:
            cursor.execute(compiled.sql, params)
            rows: Any = cursor.fetchall()
        if compiled.converters:
            rows = [row_converted(row, compiled.converters, connection) for row in rows]
        return [self.model.from_db(alias, self.attnames, row) for row in rows]

    def first(self, *values: Any) -> M | None:
        """The row, or None (for unique fields: no order is needed to pick it)."""
        found = self.all(*values)
        return found[0] if found else None

    def get(self, *values: Any) -> M:
        """The one row, or ``DoesNotExist``/``MultipleObjectsReturned`` as ``get()``."""
        found = self.all(*values)
        if len(found) == 1:
            return found[0]
        if not found:
            raise self.model.DoesNotExist(  # type: ignore[attr-defined]
                f"{self.model._meta.object_name} matching query does not exist."
            )
        raise self.model.MultipleObjectsReturned(  # type: ignore[attr-defined]
            f"get() returned more than one {self.model._meta.object_name} -- "
            f"it returned {len(found)}!"
        )

    def _compile(self, alias: str) -> _Compiled:
        queryset = self.model._default_manager.using(alias).filter(
            **{field.attname: _Slot(index, field) for index, field in enumerate(self.fields)}
        )
        if self.refine is not None:
            queryset = self.refine(queryset)
        if self.for_update:
            queryset = queryset.select_for_update()
        compiler = queryset.query.get_compiler(using=alias)
        sql, params = compiler.as_sql()
        # Whole rows of the model, in its field order, and nothing else: from_db needs it.
        columns = [column for column, _, _ in compiler.select]
        expected = [field.column for field in self.model._meta.concrete_fields]
        if [
            getattr(column, "target", None) and column.target.column for column in columns
        ] != expected:
            raise ValueError(f"{self.model.__name__}'s default manager does not select whole rows")
        markers = sorted(param.index for param in params if isinstance(param, _Marker))
        if markers != list(range(len(self.fields))):
            raise ValueError(f"{self.model.__name__}: each value must be bound exactly once")
        converters = compiler.get_converters(columns)
        operations = connections[alias].ops
        integer_ranges = tuple(
            (index, *operations.integer_field_range(internal_type))
            for index, internal_type in enumerate(_column_type(field) for field in self.fields)
            if internal_type in BaseDatabaseOperations.integer_field_ranges
        )
        return _Compiled(
            sql=sql, params=tuple(params), converters=converters, integer_ranges=integer_ranges
        )

    @staticmethod
    def _bind(value: Any, field: models.Field[Any, Any], connection: Any) -> Any:
        return field.get_db_prep_value(value, connection, prepared=False)


def _column_type(field: models.Field[Any, Any]) -> str:
    """The internal type of the column ``field`` reads (a foreign key: its target's)."""
    return getattr(field, "target_field", field).get_internal_type()


def whole_row_converters(model: type[models.Model], connection: Any) -> dict[int, Any]:
    """Django's converters for a whole row of ``model`` on ``connection``, by position (for
    rows a statement of the project's own returns, in the model's field order)."""
    meta = model._meta
    columns = [field.get_col(meta.db_table) for field in meta.concrete_fields]
    return Query(model).get_compiler(connection=connection).get_converters(columns)


def row_converted(
    row: tuple[Any, ...], converters: dict[int, Any], connection: Any
) -> tuple[Any, ...]:
    """A row as a queryset returns it: each column through its converters, in order."""
    values = list(row)
    for position, (functions, expression) in converters.items():
        for function in functions:
            values[position] = function(values[position], expression, connection)
    return tuple(values)


# --- Saving some fields of a row ----------------------------------------------------------
@dataclass(frozen=True)
class _Update:
    sql: str
    params: tuple[Any, ...]  # markers: 0..n-1 the fields' values, n the primary key
    fields: tuple[models.Field[Any, Any], ...]


_updates: dict[tuple[type[models.Model], frozenset[str], str, str], _Update] = {}


def save_fields(instance: models.Model, fields: Iterable[str]) -> None:
    """``instance.save(update_fields=fields)``, with the UPDATE's SQL written by Django's
    compiler once per model, set of fields and database.

    What ``save()`` does for an existing row is done here too: ``pre_save`` and
    ``post_save`` are sent, each field's ``pre_save`` runs (``auto_now``), values are
    prepared with ``get_db_prep_save``, an UPDATE that matches no row raises
    ``DatabaseError``, and an error marks the caller's transaction for rollback. A model
    with parents, or a value that is an expression (``F()``), goes through ``save()``."""
    model = type(instance)
    names = frozenset(fields)
    if not names:
        return
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    update = None if model._meta.parents else _update_for(model, names, using, instance)
    if update is None:
        instance.save(update_fields=names)
        return
    meta = model._meta
    if not meta.auto_created:
        signals.pre_save.send(
            sender=model, instance=instance, raw=False, using=using, update_fields=names
        )
    params = _update_params(update, instance, connection)
    with transaction.mark_for_rollback_on_error(using), connection.cursor() as cursor:
        cursor.execute(update.sql, params)
        if cursor.rowcount == 0:
            raise DatabaseError("Save with update_fields did not affect any rows.")
    instance._state.db = using
    instance._state.adding = False
    if not meta.auto_created:
        signals.post_save.send(
            sender=model,
            instance=instance,
            created=False,
            update_fields=names,
            raw=False,
            using=using,
        )


def _update_for(
    model: type[models.Model], names: frozenset[str], using: str, instance: models.Model
) -> _Update | None:
    """The compiled UPDATE of ``names`` (once per model, set of fields and database), or
    None when a value of ``instance`` is an expression (``F()``): only ``save()`` can
    write that."""
    key = (model, names, using, connections[using].vendor)
    update = _updates.get(key)
    if update is None:
        update = _updates[key] = _update_compile(model, names, using)
    if any(hasattr(getattr(instance, f.attname), "resolve_expression") for f in update.fields):
        return None
    return update


def _update_params(update: _Update, instance: models.Model, connection: Any) -> list[Any]:
    """The UPDATE's parameters: each field's ``pre_save`` value (``auto_now``) prepared
    with ``get_db_prep_save``, and the primary key."""
    values = [
        field.get_db_prep_save(field.pre_save(instance, False), connection)
        for field in update.fields
    ]
    pk = instance._meta.pk.get_db_prep_value(instance.pk, connection, prepared=False)
    return [
        (values[param.index] if param.index < len(values) else pk)
        if isinstance(param, _Marker)
        else param
        for param in update.params
    ]


def _update_compile(model: type[models.Model], names: frozenset[str], using: str) -> _Update:
    meta = model._meta
    fields = tuple(
        field
        for field in meta.local_concrete_fields
        if not field.primary_key
        and not getattr(field, "generated", False)
        and (field.name in names or field.attname in names)
    )
    known = {field.name for field in fields} | {field.attname for field in fields}
    if names - known:
        # save()'s own words for a name that is not a column of this table.
        raise ValueError(
            "The following fields do not exist in this model, are m2m fields, primary keys, "
            f"or are non-concrete fields: {', '.join(sorted(names - known))}"
        )
    query: Any = (
        model._base_manager.using(using)
        .filter(pk=_Slot(len(fields), meta.pk))
        .query.chain(UpdateQuery)
    )
    query.add_update_fields(
        [(field, None, _Slot(index, field)) for index, field in enumerate(fields)]
    )
    sql, params = query.get_compiler(using).as_sql()
    markers = sorted(param.index for param in params if isinstance(param, _Marker))
    if markers != list(range(len(fields) + 1)):
        raise ValueError(f"{model.__name__}: each value must be bound exactly once")
    return _Update(sql=sql, params=tuple(params), fields=fields)


# --- One row's write inside a larger statement of the caller's (a CTE) ----------------------
@dataclass(frozen=True)
class RowWrite:
    """One row's write as a statement for a larger one of the caller's (a CTE): it
    returns the row's primary key when it wrote the row (``guarded_update``: only while
    the row is as the caller read it; ``row_insert``: a new row)."""

    sql: str
    params: tuple[Any, ...]
    instance: models.Model
    using: str

    def written(self) -> None:
        """Mark the instance saved, as ``save()`` does (call it once the row was written)."""
        self.instance._state.db = self.using
        self.instance._state.adding = False


def guarded_update(
    instance: models.Model, fields: Iterable[str], *, read: models.Model
) -> RowWrite | None:
    """The UPDATE of ``fields`` of ``instance`` (values prepared as ``save_fields`` does,
    ``auto_now`` included) that matches the row only if all its columns equal those of
    ``read``: the row as the caller read it, before changing its own copy. A caller that
    acted on a stale copy writes nothing, and can read the row under its lock instead.

    None where this cannot stand for ``save_fields``: a model with parents, a value that
    is an expression, a model whose ``pre_save``/``post_save`` have receivers (this
    statement sends no signals), or a database other than PostgreSQL (the statement is
    meant for a data-modifying CTE)."""
    model = type(instance)
    meta = model._meta
    names = frozenset(fields)
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    if (
        connection.vendor != "postgresql"
        or not names
        or meta.parents
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        return None
    update = _update_for(model, names, using, instance)
    if update is None:
        return None
    key = (model, names, using, connection.vendor)
    sql = _guarded.get(key)
    if sql is None:
        sql = _guarded[key] = _guarded_sql(model, update, connection)
    params = _update_params(update, instance, connection)
    held_values = [
        field.get_db_prep_value(getattr(read, field.attname), connection, prepared=False)
        for field in meta.concrete_fields
    ]
    return RowWrite(sql=sql, params=(*params, *held_values), instance=instance, using=using)


def row_insert(instance: models.Model) -> RowWrite | None:
    """The INSERT ``instance.save()`` would run for a new row (Django's own compiler, so
    the same columns, ``pre_save`` values and prepared parameters), returning its
    primary key. None where this cannot stand for ``save()``: the primary key is not set
    before the insert (the database would assign it), a model with parents, one whose
    ``pre_save``/``post_save`` have receivers (this statement sends no signals), or a
    database other than PostgreSQL (the statement is meant for a data-modifying CTE)."""
    model = type(instance)
    meta = model._meta
    using = router.db_for_write(model, instance=instance)
    connection = connections[using]
    if (
        connection.vendor != "postgresql"
        or instance.pk is None
        or meta.parents
        or signals.pre_save.has_listeners(model)
        or signals.post_save.has_listeners(model)
    ):
        return None
    query = InsertQuery(model)
    query.insert_values(
        [field for field in meta.local_concrete_fields if not field.generated],
        [instance],
        raw=False,
    )
    [(sql, params)] = query.get_compiler(using=using).as_sql()
    quote = connection.ops.quote_name
    returning = f" RETURNING {quote(meta.db_table)}.{quote(str(meta.pk.column))}"
    return RowWrite(sql=sql + returning, params=tuple(params), instance=instance, using=using)


# The guarded UPDATE's SQL, by the same key as `_updates`.
_guarded: dict[tuple[type[models.Model], frozenset[str], str, str], str] = {}


def _guarded_sql(model: type[models.Model], update: _Update, connection: Any) -> str:
    meta = model._meta
    quote = connection.ops.quote_name
    table = quote(meta.db_table)
    columns = meta.concrete_fields
    stored = ", ".join(f"{table}.{quote(field.column)}" for field in columns)
    # Each value cast to its column's type: equal means equal as the database compares.
    held = ", ".join(f"CAST(%s AS {field.cast_db_type(connection)})" for field in columns)
    # Django's UPDATE ends with its WHERE on the primary key: the guard narrows it.
    return (
        f"{update.sql} AND ROW({stored}) IS NOT DISTINCT FROM ROW({held}) "
        f"RETURNING {table}.{quote(meta.pk.column)}"
    )
