"""Hot statements compiled to SQL once per shape instead of once per call.

The ORM rebuilds and compiles a query on every call. On the hottest paths that compile was a
large share of the CPU: a quarter of a worker's per W1 execution, and 9 % of the web process's
under the execute load for the request's user lookup alone. These helpers write the SQL the
ORM would, from the models' metadata, cache it by shape (model, columns, row count) and convert
values through the fields themselves (`get_db_prep_save` going in, the fields' and backend's
converters coming out), so they behave the same on PostgreSQL and SQLite.
`executions.statements` builds the run path's own statements on them.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any, TypeVar

import orjson
import psycopg
from django.core.exceptions import ValidationError
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model
from psycopg.pq import ExecStatus

# Statements whose text depends on a row count (inserts) are cached up to this many shapes.
STATEMENT_CACHE_SIZE = 256
# PostgreSQL's wire protocol counts parameters in 16 bits.
MAX_PARAMS_POSTGRESQL = 65_535
Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]
M = TypeVar("M", bound=Model)


def connection_for(using: str) -> BaseDatabaseWrapper:
    return connections[using]


def fields_of(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    """Fields by name or attname (`workflow` or `workflow_id`)."""
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


def pk_of(model: type[Model]) -> Field[Any, Any]:
    pk = model._meta.pk
    if pk is None:  # pragma: no cover - every concrete model has one
        raise TypeError(f"{model.__name__} has no primary key")
    return pk


def columns_sql(connection: BaseDatabaseWrapper, fields: Iterable[Field[Any, Any]]) -> str:
    return ", ".join(connection.ops.quote_name(str(field.column)) for field in fields)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)
def _numbered(sql: str) -> str:
    """`%s` placeholders as PostgreSQL's own `$1, $2, ...` (our SQL has no other `%`)."""
    parts = sql.split("%s")
    return parts[0] + "".join(f"${n}{part}" for n, part in enumerate(parts[1:], start=1))


def _cursor(connection: BaseDatabaseWrapper) -> Any:
    """Django's cursor wrapper (error translation, query log) around the backend's cursor.

    On PostgreSQL it wraps a psycopg `RawCursor`: parameters go to the server apart from the
    SQL, so psycopg neither parses the statement for placeholders (it caches that only up to
    50 parameters, and a 22-node run's inserts carry hundreds) nor quotes every value. That
    measured 559 -> 97 µs of client CPU for a 22-row node-run insert.
    """
    if connection.vendor != "postgresql":
        return connection.cursor()
    connection.close_if_health_check_failed()
    connection.ensure_connection()
    with connection.wrap_database_errors:
        raw: Any = psycopg.RawCursor(connection.connection)  # the stubs expect a wrapper here
    if connection.queries_logged:
        return connection.make_debug_cursor(raw)
    return connection.make_cursor(raw)


def execute(using: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]] | None:
    """Run one statement; the rows when it returns any."""
    connection = connection_for(using)
    if connection.vendor == "postgresql":
        sql = _numbered(sql)
    with transaction.mark_for_rollback_on_error(using=using), _cursor(connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if _returned_rows(cursor) else None


def _returned_rows(cursor: Any) -> bool:
    # psycopg's `description` builds an object per column (a quarter of `get_one`'s CPU for a
    # workflow's row) only to say whether there are rows: its result's status says it too.
    result = getattr(cursor, "pgresult", None)
    if result is not None:
        return bool(result.status == ExecStatus.TUPLES_OK)
    return cursor.description is not None


# --- Reading rows back the way the ORM does ---------------------------------------------------


@cache
def _converters(
    using: str, model: type[Model], names: tuple[str, ...]
) -> tuple[tuple[int, tuple[Converter, ...], Any], ...]:
    """Per column, the backend's and the field's converters (as the query compiler finds them)."""
    connection = connection_for(using)
    table = model._meta.db_table
    found = []
    for position, field in enumerate(fields_of(model, names)):
        column = field.get_col(table)
        chain = (*connection.ops.get_db_converters(column), *field.get_db_converters(connection))
        if chain:
            found.append((position, tuple(chain), column))
    return tuple(found)


def convert_rows(
    using: str, model: type[Model], names: tuple[str, ...], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    connection = connection_for(using)
    converters = _converters(using, model, names)
    converted = []
    for row in rows:
        values = list(row)
        for position, chain, column in converters:
            value = values[position]
            for converter in chain:
                value = converter(value, column, connection)
            values[position] = value
        converted.append(values)
    return converted


# --- Inserts and upserts ----------------------------------------------------------------------


@cache
def insert_names(model: type[Model]) -> tuple[str, ...]:
    """Every concrete column, less an auto-generated primary key."""
    return tuple(
        field.attname
        for field in model._meta.concrete_fields
        if not (field.primary_key and field.db_returning)
    )


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)  # one entry per row count: bounded
def _insert_sql(
    using: str, model: type[Model], names: tuple[str, ...], rows: int, update: tuple[str, ...]
) -> str:
    connection = connection_for(using)
    fields = fields_of(model, names)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} "  # noqa: S608
        f"({columns_sql(connection, fields)}) VALUES {', '.join([row] * rows)}"
    )
    if update:
        quote = connection.ops.quote_name
        updates = ", ".join(
            f"{quote(str(f.column))} = EXCLUDED.{quote(str(f.column))}"
            for f in fields_of(model, update)
        )
        sql += f" ON CONFLICT ({quote(str(pk_of(model).column))}) DO UPDATE SET {updates}"
    return sql


def _batches(connection: BaseDatabaseWrapper, objs: list[Model], columns: int) -> Iterable[Any]:
    limit = connection.ops.bulk_batch_size(["x"] * columns, objs) or 1
    if connection.vendor == "postgresql":
        limit = min(limit, MAX_PARAMS_POSTGRESQL // columns)
    for start in range(0, len(objs), limit):
        yield objs[start : start + limit]


def row_params(
    objs: Iterable[Model], fields: Sequence[Field[Any, Any]], connection: BaseDatabaseWrapper
) -> list[Any]:
    """The instances' values for `fields`, row after row, as the database takes them."""
    return [
        field.get_db_prep_save(field.pre_save(obj, add=True), connection=connection)
        for obj in objs
        for field in fields
    ]


def mark_saved(objs: Iterable[Model], using: str) -> None:
    """What the ORM notes on instances it saved."""
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


def insert_objects(
    objs: Sequence[Model], *, update_fields: tuple[str, ...] = (), using: str = "default"
) -> None:
    """`bulk_create` of instances of one model (no ids read back), its SQL cached by shape.

    With `update_fields`, a row whose primary key exists gets those columns overwritten
    instead (the instances then carry their primary key).
    """
    if not objs:
        return
    model = type(objs[0])
    connection = connection_for(using)
    if update_fields:
        names = tuple(field.attname for field in model._meta.concrete_fields)
    else:
        names = insert_names(model)
    fields = fields_of(model, names)
    for batch in _batches(connection, list(objs), len(fields)):
        params = row_params(batch, fields, connection)
        execute(using, _insert_sql(using, model, names, len(batch), update_fields), params)
    mark_saved(objs, using)


def _column_type(connection: BaseDatabaseWrapper, field: Field[Any, Any]) -> str:
    """The column's type without a length (`varchar(8)` -> `varchar`): a record column of it
    then never cuts a value the column would refuse."""
    return re.sub(r"\(.*?\)", "", str(field.db_type(connection) or "text"))


# --- Rows as one JSON parameter (PostgreSQL) ----------------------------------------------------


def record_columns_sql(connection: BaseDatabaseWrapper, fields: Sequence[Field[Any, Any]]) -> str:
    """`"column" type, ...`: the column definitions of `json_to_recordset` for `fields`."""
    quote = connection.ops.quote_name
    return ", ".join(f"{quote(str(f.column))} {_column_type(connection, f)}" for f in fields)


def _json_value(value: Any) -> Any:
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def json_records(rows: Sequence[Mapping[str, Any]]) -> str:
    """Rows (dicts keyed by column) as the JSON text `json_to_recordset(%s::json)` reads.

    One parameter for any number of rows, where an INSERT's VALUES takes one per column and
    row: no model instances to build, no value to prepare field by field, nothing for psycopg
    to adapt but one string, and one statement text whatever the row count. A JSON value of a
    `jsonb` column goes in as it is; JSON null is SQL NULL, as the ORM stores None.

    orjson writes it (UUIDs and datetimes natively: a W1 run's write took 38 µs through
    `json.dumps` and its Python `default`, 2.7 µs here). What orjson refuses and `json.dumps`
    writes — integers past 64 bits, keys that are not strings, a lone surrogate (for the caller
    to find and scrub) — goes through `json.dumps` as before.
    """
    try:
        return orjson.dumps(rows, default=_json_value).decode()
    except orjson.JSONEncodeError:
        return json.dumps(rows, default=_json_value, ensure_ascii=False, separators=(",", ":"))


# --- Reading one row --------------------------------------------------------------------------


def _lookup_field(model: type[Model], name: str) -> Field[Any, Any]:
    return pk_of(model) if name == "pk" else fields_of(model, [name])[0]


@cache
def _get_one_sql(using: str, model: type[Model], field_name: str) -> tuple[str, tuple[str, ...]]:
    connection = connection_for(using)
    fields = list(model._meta.concrete_fields)
    key = _lookup_field(model, field_name)
    if not (key.primary_key or key.unique):
        raise TypeError(f"{model.__name__}.{field_name} is not unique: get_one reads one row")
    column = key.column
    sql = (
        f"SELECT {columns_sql(connection, fields)} "  # noqa: S608
        f"FROM {connection.ops.quote_name(model._meta.db_table)} "
        f"WHERE {connection.ops.quote_name(str(column))} = %s LIMIT 1"
    )
    return sql, tuple(field.attname for field in fields)


def prepared_key(field: Field[Any, Any], value: Any, using: str = "default") -> Any:
    """`value` as the database takes it for `field`; None when it is malformed (not a UUID, say),
    where the ORM's lookup would raise: a key that cannot exist finds nothing."""
    try:
        return field.get_db_prep_value(field.to_python(value), connection_for(using))
    except ValidationError:
        return None


def get_one(model: type[M], field_name: str, value: Any, *, using: str = "default") -> M | None:
    """The row whose unique `field_name` is `value`, or None, without the ORM's compile.

    `model.objects.filter(**{field_name: value}).first()` for a primary key or unique field. A
    malformed value (not a UUID, say), on which the ORM's lookup would raise, finds nothing.
    """
    prepared = prepared_key(_lookup_field(model, field_name), value, using)
    if prepared is None:
        return None
    sql, names = _get_one_sql(using, model, field_name)
    rows = execute(using, sql, [prepared])
    if not rows:
        return None
    return model.from_db(using, list(names), convert_rows(using, model, names, rows)[0])
