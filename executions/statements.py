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
)
from executions.models import NODE_RUN_STATE_FIELDS, Execution, ExecutionStatus, NodeRun

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


@cache
def _node_runs_sql(using: str) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns_sql(connection, fields_of(NodeRun, NODE_RUN_READ))} "  # noqa: S608
        f"FROM {quote(NodeRun._meta.db_table)} WHERE execution_id = %s ORDER BY position"
    )


def node_runs_of(execution_id: object, *, using: str = "default") -> list[dict[str, Any]]:
    """An execution's node runs in graph order, as dicts of `NODE_RUN_READ`."""
    connection = connection_for(using)
    pk = pk_of(Execution)
    rows = execute(using, _node_runs_sql(using), [pk.get_db_prep_value(execution_id, connection)])
    converted = convert_rows(using, NodeRun, NODE_RUN_READ, rows or [])
    return [dict(zip(NODE_RUN_READ, row, strict=True)) for row in converted]
