"""The run path's hot statements: claim a run, move its row, load its node runs.

Every execution runs the same few statements; through the ORM each call rebuilt and compiled
its query, about a quarter of a worker's CPU per W1 execution. They are compiled once here,
on `autoflow.statements` (which also inserts the run's rows: `insert_objects`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from functools import cache
from typing import Any

from autoflow.statements import (
    columns_sql,
    connection_for,
    convert_rows,
    execute,
    fields_of,
    pk_of,
    prepared_key,
)
from executions.models import NODE_RUN_STATE_FIELDS, Execution, ExecutionStatus, NodeRun
from workflows.models import Workflow

# --- The execution row ------------------------------------------------------------------------


@cache
def _claim_sql(using: str) -> tuple[str, tuple[str, ...]]:
    connection = connection_for(using)
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
        f"RETURNING {columns_sql(connection, fields)}"
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
    connection = connection_for(using)
    sql, names = _claim_sql(using)
    pk = pk_of(Execution)
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
    rows = execute(using, sql, params)
    if not rows:
        return None
    return Execution.from_db(using, list(names), convert_rows(using, Execution, names, rows)[0])


@cache
def _guarded_update_sql(using: str, names: tuple[str, ...], guarded: bool) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    fields = fields_of(Execution, names)
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
    connection = connection_for(using)
    names = tuple(changes)
    fields = fields_of(Execution, names)
    pk = pk_of(Execution)
    params: list[Any] = [log_lines]
    params += [
        f.get_db_prep_save(changes[n], connection) for f, n in zip(fields, names, strict=True)
    ]
    params.append(pk.get_db_prep_value(execution_id, connection))
    if lease_owner is not None:
        params += [ExecutionStatus.RUNNING, lease_owner]
    sql = _guarded_update_sql(using, names, lease_owner is not None)
    rows = execute(using, sql, params)
    if not rows:
        return None
    next_seq, cancel = convert_rows(using, Execution, ("next_log_seq", "cancel_requested"), rows)[0]
    return int(next_seq), bool(cancel)


# --- Node runs --------------------------------------------------------------------------------

NODE_RUN_READ = ("id", "node_id", "type", *NODE_RUN_STATE_FIELDS)
NODE_RUN_ALL = tuple(field.attname for field in NodeRun._meta.concrete_fields)


@cache
def _node_runs_sql(using: str, names: tuple[str, ...]) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns_sql(connection, fields_of(NodeRun, names))} "  # noqa: S608
        f"FROM {quote(NodeRun._meta.db_table)} WHERE execution_id = %s ORDER BY position"
    )


def _node_run_rows(execution_id: object, names: tuple[str, ...], using: str) -> list[list[Any]]:
    connection = connection_for(using)
    pk = pk_of(Execution)
    sql = _node_runs_sql(using, names)
    rows = execute(using, sql, [pk.get_db_prep_value(execution_id, connection)])
    return convert_rows(using, NodeRun, names, rows or [])


def node_runs_of(execution_id: object, *, using: str = "default") -> list[dict[str, Any]]:
    """An execution's node runs in graph order, as dicts of `NODE_RUN_READ`."""
    rows = _node_run_rows(execution_id, NODE_RUN_READ, using)
    return [dict(zip(NODE_RUN_READ, row, strict=True)) for row in rows]


def node_run_models_of(execution_id: object, *, using: str = "default") -> list[NodeRun]:
    """An execution's node runs in graph order, as whole `NodeRun` instances."""
    rows = _node_run_rows(execution_id, NODE_RUN_ALL, using)
    return [NodeRun.from_db(using, list(NODE_RUN_ALL), row) for row in rows]


# --- Reading a run for the API ----------------------------------------------------------------

EXECUTION_ALL = tuple(field.attname for field in Execution._meta.concrete_fields)


@cache
def _execution_and_owner_sql(using: str) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    execution_table = quote(Execution._meta.db_table)
    workflow_table = quote(Workflow._meta.db_table)
    return (
        f"SELECT {columns_sql(connection, Execution._meta.concrete_fields)}, "  # noqa: S608
        f"(SELECT {quote('owner_id')} FROM {workflow_table} "
        f"WHERE {workflow_table}.{quote('id')} = {execution_table}.{quote('workflow_id')}) "
        f"FROM {execution_table} WHERE {execution_table}.{quote('id')} = %s"
    )


def execution_and_owner(
    execution_id: object, *, using: str = "default"
) -> tuple[Execution, Any] | None:
    """An execution and its workflow's owner id in one statement; None when there is none.

    A malformed id (not a UUID) finds nothing (`autoflow.statements.prepared_key`).
    """
    prepared = prepared_key(pk_of(Execution), execution_id, using)
    if prepared is None:
        return None
    rows = execute(using, _execution_and_owner_sql(using), [prepared])
    if not rows:
        return None
    *values, owner_id = rows[0]
    converted = convert_rows(using, Execution, EXECUTION_ALL, [values])[0]
    [[owner]] = convert_rows(using, Workflow, ("owner_id",), [[owner_id]])
    return Execution.from_db(using, list(EXECUTION_ALL), converted), owner
