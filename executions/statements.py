"""The run path's hot statements, compiled to SQL once per shape instead of once per call.

Every execution runs the same few statements (insert the run, claim it, load its node runs,
write its log lines and node runs, move its status). Through the ORM each call rebuilds its
query and compiles it again, which profiled at about a quarter of a worker's CPU per W1
execution: more than PostgreSQL spent executing them. These helpers write the SQL the ORM
would, from the models' metadata, cache it by shape (model, columns, row count) and convert
values through the fields themselves (`get_db_prep_save` going in, the fields' and backend's
converters coming out), so they behave the same on PostgreSQL and SQLite.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache, lru_cache
from typing import Any

import psycopg
from django.db import connections, transaction
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model

from executions.models import NODE_RUN_STATE_FIELDS, Execution, ExecutionStatus, NodeRun

# Statements whose text depends on a row count (inserts) are cached up to this many shapes.
STATEMENT_CACHE_SIZE = 256
# PostgreSQL's wire protocol counts parameters in 16 bits.
MAX_PARAMS_POSTGRESQL = 65_535
Converter = Callable[[Any, Any, BaseDatabaseWrapper], Any]


def _connection(using: str) -> BaseDatabaseWrapper:
    return connections[using]


def _fields(model: type[Model], names: Sequence[str]) -> list[Field[Any, Any]]:
    """Fields by name or attname (`workflow` or `workflow_id`)."""
    return [model._meta.get_field(name) for name in names]  # type: ignore[misc]


def _pk(model: type[Model]) -> Field[Any, Any]:
    pk = model._meta.pk
    if pk is None:  # pragma: no cover - every concrete model has one
        raise TypeError(f"{model.__name__} has no primary key")
    return pk


def _columns(connection: BaseDatabaseWrapper, fields: Iterable[Field[Any, Any]]) -> str:
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


def _execute(using: str, sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]] | None:
    """Run one statement; the rows when it returns any."""
    connection = _connection(using)
    if connection.vendor == "postgresql":
        sql = _numbered(sql)
    with transaction.mark_for_rollback_on_error(using=using), _cursor(connection) as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description is not None else None


# --- Reading rows back the way the ORM does ---------------------------------------------------


@cache
def _converters(
    using: str, model: type[Model], names: tuple[str, ...]
) -> tuple[tuple[int, tuple[Converter, ...], Any], ...]:
    """Per column, the backend's and the field's converters (as the query compiler finds them)."""
    connection = _connection(using)
    table = model._meta.db_table
    found = []
    for position, field in enumerate(_fields(model, names)):
        column = field.get_col(table)
        chain = (*connection.ops.get_db_converters(column), *field.get_db_converters(connection))
        if chain:
            found.append((position, tuple(chain), column))
    return tuple(found)


def _convert(
    using: str, model: type[Model], names: tuple[str, ...], rows: Iterable[Sequence[Any]]
) -> list[list[Any]]:
    connection = _connection(using)
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
def _insert_names(model: type[Model]) -> tuple[str, ...]:
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
    connection = _connection(using)
    fields = _fields(model, names)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    sql = (
        f"INSERT INTO {connection.ops.quote_name(model._meta.db_table)} "  # noqa: S608
        f"({_columns(connection, fields)}) VALUES {', '.join([row] * rows)}"
    )
    if update:
        quote = connection.ops.quote_name
        updates = ", ".join(
            f"{quote(str(f.column))} = EXCLUDED.{quote(str(f.column))}"
            for f in _fields(model, update)
        )
        sql += f" ON CONFLICT ({quote(str(_pk(model).column))}) DO UPDATE SET {updates}"
    return sql


def _batches(connection: BaseDatabaseWrapper, objs: list[Model], columns: int) -> Iterable[Any]:
    limit = connection.ops.bulk_batch_size(["x"] * columns, objs) or 1
    if connection.vendor == "postgresql":
        limit = min(limit, MAX_PARAMS_POSTGRESQL // columns)
    for start in range(0, len(objs), limit):
        yield objs[start : start + limit]


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
    connection = _connection(using)
    if update_fields:
        names = tuple(field.attname for field in model._meta.concrete_fields)
    else:
        names = _insert_names(model)
    fields = _fields(model, names)
    for batch in _batches(connection, list(objs), len(fields)):
        params = [
            field.get_db_prep_save(field.pre_save(obj, add=True), connection=connection)
            for obj in batch
            for field in fields
        ]
        _execute(using, _insert_sql(using, model, names, len(batch), update_fields), params)
    for obj in objs:
        obj._state.adding = False
        obj._state.db = using


# --- The execution row ------------------------------------------------------------------------


@cache
def _claim_sql(using: str) -> tuple[str, tuple[str, ...]]:
    connection = _connection(using)
    quote = connection.ops.quote_name
    names = tuple(field.attname for field in Execution._meta.concrete_fields)
    fields = list(Execution._meta.concrete_fields)
    sql = (
        f"UPDATE {quote(Execution._meta.db_table)} SET "  # noqa: S608
        "recovery_count = CASE WHEN status = %s THEN recovery_count + 1 "
        "ELSE recovery_count END, "
        "status = %s, lease_owner = %s, lease_expires_at = %s, "
        "started_at = COALESCE(started_at, %s), wake_at = NULL "
        "WHERE id = %s AND (status = %s OR (status = %s AND wake_at <= %s) "
        "OR (status = %s AND lease_expires_at < %s)) "
        f"RETURNING {_columns(connection, fields)}"
    )
    return sql, names


def claim_execution(
    execution_id: object,
    *,
    lease_owner: str,
    now: dt.datetime,
    lease_expires_at: dt.datetime,
    using: str = "default",
) -> Execution | None:
    """Take a queued, due, or abandoned run with one conditional UPDATE that reads it back.

    A run taken over from a lapsed lease counts one more recovery. None when another worker
    holds it, it is not due yet, or it is finished.
    """
    connection = _connection(using)
    sql, names = _claim_sql(using)
    pk = _pk(Execution)
    at = Execution._meta.get_field("lease_expires_at")
    at_now = at.get_db_prep_save(now, connection)
    running = ExecutionStatus.RUNNING
    params = [
        running,
        running,
        lease_owner,
        at.get_db_prep_save(lease_expires_at, connection),
        at_now,
        pk.get_db_prep_value(execution_id, connection),
        ExecutionStatus.QUEUED,
        ExecutionStatus.WAITING,
        at_now,
        running,
        at_now,
    ]
    rows = _execute(using, sql, params)
    if not rows:
        return None
    return Execution.from_db(using, list(names), _convert(using, Execution, names, rows)[0])


@cache
def _guarded_update_sql(using: str, names: tuple[str, ...], guarded: bool) -> str:
    connection = _connection(using)
    quote = connection.ops.quote_name
    fields = _fields(Execution, names)
    assignments = "".join(f", {quote(str(field.column))} = %s" for field in fields)
    guard = " AND status = %s AND lease_owner = %s" if guarded else ""
    return (
        f"UPDATE {quote(Execution._meta.db_table)} "  # noqa: S608
        f"SET next_log_seq = next_log_seq + %s{assignments} WHERE id = %s{guard} "
        "RETURNING next_log_seq, cancel_requested"
    )


def update_execution(
    execution_id: object,
    *,
    log_lines: int,
    changes: Mapping[str, Any],
    lease_owner: str | None = None,
    using: str = "default",
) -> tuple[int, bool] | None:
    """Reserve `log_lines` log seqs and apply `changes`, in one UPDATE that reads both back.

    With `lease_owner`, only while that worker holds the running execution. Returns
    `(next_log_seq, cancel_requested)`, or None when no row matched.
    """
    connection = _connection(using)
    names = tuple(changes)
    fields = _fields(Execution, names)
    pk = _pk(Execution)
    params: list[Any] = [log_lines]
    params += [
        f.get_db_prep_save(changes[n], connection) for f, n in zip(fields, names, strict=True)
    ]
    params.append(pk.get_db_prep_value(execution_id, connection))
    if lease_owner is not None:
        params += [ExecutionStatus.RUNNING, lease_owner]
    sql = _guarded_update_sql(using, names, lease_owner is not None)
    rows = _execute(using, sql, params)
    if not rows:
        return None
    next_seq, cancel = _convert(using, Execution, ("next_log_seq", "cancel_requested"), rows)[0]
    return int(next_seq), bool(cancel)


# --- Node runs --------------------------------------------------------------------------------

NODE_RUN_READ = ("id", "node_id", "type", *NODE_RUN_STATE_FIELDS)


@cache
def _node_runs_sql(using: str) -> str:
    connection = _connection(using)
    quote = connection.ops.quote_name
    return (
        f"SELECT {_columns(connection, _fields(NodeRun, NODE_RUN_READ))} "  # noqa: S608
        f"FROM {quote(NodeRun._meta.db_table)} WHERE execution_id = %s ORDER BY position"
    )


def node_runs_of(execution_id: object, *, using: str = "default") -> list[dict[str, Any]]:
    """An execution's node runs in graph order, as dicts of `NODE_RUN_READ`."""
    connection = _connection(using)
    pk = _pk(Execution)
    rows = _execute(using, _node_runs_sql(using), [pk.get_db_prep_value(execution_id, connection)])
    converted = _convert(using, NodeRun, NODE_RUN_READ, rows or [])
    return [dict(zip(NODE_RUN_READ, row, strict=True)) for row in converted]
