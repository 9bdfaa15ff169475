"""The run path's hot statements: insert a new run, claim it with its node runs, write it, read it.

Every execution runs the same few statements; through the ORM each call rebuilt and compiled
its query, about a quarter of a worker's CPU per W1 execution. They are compiled once here,
on `autoflow.statements`, and on PostgreSQL each is one statement, one round trip; many rows of
one kind (node runs, log lines) travel as one JSON parameter.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from functools import cache, lru_cache
from typing import Any

from django.db import transaction
from django.db.models import Model

from autoflow.statements import (
    STATEMENT_CACHE_SIZE,
    columns_sql,
    connection_for,
    convert_rows,
    execute,
    fields_of,
    insert_names,
    insert_objects,
    json_records,
    mark_saved,
    pk_of,
    prepared_key,
    record_columns_sql,
)
from autoflow.storable import json_storable, scrubbed
from executions.models import (
    NODE_RUN_STATE_FIELDS,
    Execution,
    ExecutionLog,
    ExecutionStatus,
    NodeRun,
)
from workflows.models import Workflow

# --- The execution row ------------------------------------------------------------------------


EXECUTION_ALL = tuple(field.attname for field in Execution._meta.concrete_fields)
NODE_RUN_READ = ("id", "node_id", "type", *NODE_RUN_STATE_FIELDS)
LOG_LINE_READ = ("seq", "ts", "level", "node_id", "message", "data")
# A log line's columns but its seq, which comes from the execution row's counter.
LOG_VALUES = ("execution_id", "ts", "level", "node_id", "message", "data")
NODE_RUN_ALL = tuple(field.attname for field in NodeRun._meta.concrete_fields)


@cache
def _claim_sql(using: str) -> str:
    """The claim, and on PostgreSQL the run's node runs after its row in the same statement.

    Row 1 is the claimed execution (NULL node columns), the rest its node runs in graph order
    (NULL execution columns): one round trip, each value read once.
    """
    connection = connection_for(using)
    quote = connection.ops.quote_name
    postgresql = connection.vendor == "postgresql"
    # On PostgreSQL the claim's commit does not wait for its WAL to reach the disk (this
    # transaction only): a database crash can lose only a claim that nothing durable followed,
    # and the run is then as it was before (queued, due, or abandoned) for the sweeper to hand
    # out again. Every write after it (a checkpoint before a side effect, a wait, the end)
    # still waits, and flushes the claim with it. Losing a claim never loses work; waiting for
    # its flush cost every run ~0.2 ms.
    async_commit = (
        " AND set_config('synchronous_commit', 'off', true) = 'off'" if postgresql else ""
    )
    claim = (
        f"UPDATE {quote(Execution._meta.db_table)} SET "  # noqa: S608
        "recovery_count = CASE WHEN status = %s THEN recovery_count + 1 "
        "ELSE recovery_count END, "
        "status = %s, lease_owner = %s, lease_expires_at = %s, "
        "started_at = COALESCE(started_at, %s), wake_at = NULL "
        "WHERE id = %s AND (status = %s OR (status = %s AND wake_at <= %s) "
        f"OR (status = %s AND lease_expires_at < %s)){async_commit} "
        f"RETURNING {columns_sql(connection, Execution._meta.concrete_fields)}"
    )
    if not postgresql:
        return claim
    return _row_and_node_runs_sql(using, claim, len(EXECUTION_ALL), NODE_RUN_READ)


def _row_and_node_runs_sql(
    using: str, row_sql: str, row_width: int, run_names: tuple[str, ...]
) -> str:
    """`row_sql` (one execution's row, with its `id`) and then its node runs, in one statement.

    Row 1 is `part, place` and the execution's `row_width` columns (NULL node-run columns),
    the rest the node runs in graph order (NULL execution columns): one round trip and one
    snapshot, each value read once (`_split_row_and_node_runs`).
    """
    connection = connection_for(using)
    quote = connection.ops.quote_name
    no_runs = ", ".join(["NULL"] * len(run_names))
    no_row = ", ".join(["NULL"] * row_width)
    runs = columns_sql(connection, fields_of(NodeRun, run_names))
    return (
        f"WITH execution_row AS ({row_sql}) "  # noqa: S608
        f"SELECT 0 AS part, 0 AS place, execution_row.*, {no_runs} FROM execution_row "
        f"UNION ALL SELECT 1, {quote('position')}, {no_row}, {runs} "
        f"FROM {quote(NodeRun._meta.db_table)} "
        f"WHERE {quote('execution_id')} = (SELECT {quote('id')} FROM execution_row) "
        "ORDER BY part, place"
    )


def _split_row_and_node_runs(
    rows: list[tuple[Any, ...]], row_width: int
) -> tuple[tuple[Any, ...], list[tuple[Any, ...]]]:
    return rows[0][2 : 2 + row_width], [row[2 + row_width :] for row in rows[1:]]


def claim_execution(
    execution_id: object,
    *,
    lease_owner: str,
    now: dt.datetime,
    lease_expires_at: dt.datetime,
    using: str = "default",
) -> tuple[Execution, list[dict[str, Any]]] | None:
    """Take a queued, due, or abandoned run with one conditional UPDATE that reads it back.

    Returns the run and its node runs (`node_runs_of`'s dicts). A run taken over from a lapsed
    lease counts one more recovery. None when another worker holds it, it is not due yet, or
    it is finished.
    """
    connection = connection_for(using)
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
    rows = execute(using, _claim_sql(using), params)
    if not rows:
        return None
    if connection.vendor != "postgresql":
        execution_row, run_rows = rows[0], None
    else:
        execution_row, run_rows = _split_row_and_node_runs(rows, len(EXECUTION_ALL))
    [values] = convert_rows(using, Execution, EXECUTION_ALL, [execution_row])
    execution = Execution.from_db(using, list(EXECUTION_ALL), values)
    if run_rows is None:
        return execution, node_runs_of(execution.pk, using=using)
    return execution, _as_dicts(using, NodeRun, NODE_RUN_READ, run_rows)


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


def _update_params(
    execution_id: object,
    names: tuple[str, ...],
    changes: Mapping[str, Any],
    log_lines: int,
    lease_owner: str | None,
    using: str,
) -> list[Any]:
    connection = connection_for(using)
    fields = fields_of(Execution, names)
    params: list[Any] = [log_lines]
    params += [
        f.get_db_prep_save(changes[n], connection) for f, n in zip(fields, names, strict=True)
    ]
    params.append(pk_of(Execution).get_db_prep_value(execution_id, connection))
    if lease_owner is not None:
        params += [ExecutionStatus.RUNNING, lease_owner]
    return params


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
    names = tuple(changes)
    params = _update_params(execution_id, names, changes, log_lines, lease_owner, using)
    sql = _guarded_update_sql(using, names, lease_owner is not None)
    rows = execute(using, sql, params)
    if not rows:
        return None
    next_seq, cancel = convert_rows(using, Execution, ("next_log_seq", "cancel_requested"), rows)[0]
    return int(next_seq), bool(cancel)


# --- A new run: its row, its node runs, its first log line --------------------------------------

# A new node run's columns (its id comes from the sequence), and what the ORM would give those
# a row leaves out.
NODE_RUN_INSERT = tuple(name for name in NODE_RUN_ALL if name != "id")
NODE_RUN_DEFAULTS = {
    name: field.get_default()
    for name, field in zip(NODE_RUN_INSERT, fields_of(NodeRun, NODE_RUN_INSERT), strict=True)
}


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)  # one entry per guard's columns: bounded
def _insert_run_sql(using: str, guard: tuple[str, ...]) -> str:
    """The run's row, then its node runs and first lines, each only if the row went in.

    Rows of each kind come as one JSON parameter (the run's row too, not 24 parameters that
    Django and psycopg prepare one by one). With `guard` (columns of the workflow's row), the
    row goes in only while the workflow's row has those values (the parameters after the
    row's); the statement returns how many rows went in.
    """
    connection = connection_for(using)
    quote = connection.ops.quote_name
    row_fields = fields_of(Execution, insert_names(Execution))
    row_columns = columns_sql(connection, row_fields)
    row = (
        f"SELECT {row_columns} "  # noqa: S608
        f"FROM json_to_recordset(%s::json) AS v({record_columns_sql(connection, row_fields)})"
    )
    if guard:
        conditions = " AND ".join(
            f"{quote(str(field.column))} = %s" for field in fields_of(Workflow, guard)
        )
        row += (
            f" WHERE EXISTS (SELECT 1 FROM {quote(Workflow._meta.db_table)} "  # noqa: S608
            f"WHERE {conditions})"
        )
    run_fields = fields_of(NodeRun, NODE_RUN_INSERT)
    runs = columns_sql(connection, run_fields)
    line_fields = fields_of(ExecutionLog, (*LOG_VALUES, "seq"))
    lines = columns_sql(connection, line_fields)
    return (
        f"WITH execution_row AS (INSERT INTO {quote(Execution._meta.db_table)} "  # noqa: S608
        f"({row_columns}) {row} RETURNING 1), "
        f"node_runs AS (INSERT INTO {quote(NodeRun._meta.db_table)} ({runs}) SELECT {runs} "
        f"FROM execution_row, "
        f"json_to_recordset(%s::json) AS v({record_columns_sql(connection, run_fields)})), "
        f"lines AS (INSERT INTO {quote(ExecutionLog._meta.db_table)} ({lines}) SELECT {lines} "
        f"FROM execution_row, "
        f"json_to_recordset(%s::json) AS v({record_columns_sql(connection, line_fields)})) "
        f"SELECT count(*) FROM execution_row"
    )


def insert_run(
    execution: Execution,
    node_runs: Sequence[dict[str, Any]],
    lines: Sequence[dict[str, Any]],
    *,
    only_if: Mapping[str, Any] | None = None,
    using: str = "default",
) -> bool:
    """Insert a new run's row, its node runs and its first log lines, atomically.

    `node_runs`: dicts of some of `NODE_RUN_INSERT` (the rest as the ORM would default them);
    `lines`: dicts of `LOG_VALUES` and `seq`. With `only_if` (values of the workflow's fields,
    as a caller last read them), nothing is written unless the workflow's row still has them.
    Returns whether the run was written. On PostgreSQL one statement, one round trip (an
    execute or a webhook call's whole write), the node runs and lines each as one JSON
    parameter; elsewhere one insert after the other in a transaction.
    """
    runs = [{**NODE_RUN_DEFAULTS, **run} for run in node_runs]
    expected = dict(only_if or {})
    guard = tuple(expected)
    connection = connection_for(using)
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using, savepoint=False):
            if guard and not Workflow.objects.using(using).filter(**expected).exists():
                return False
            insert_objects([execution], using=using)
            insert_objects([NodeRun(**run) for run in runs], using=using)
            insert_objects([ExecutionLog(**line) for line in lines], using=using)
        return True
    row = {
        str(field.column): field.pre_save(execution, add=True)
        for field in fields_of(Execution, insert_names(Execution))
    }
    guard_params = [
        field.get_db_prep_value(value, connection)
        for field, value in zip(fields_of(Workflow, guard), expected.values(), strict=True)
    ]
    params = [
        json_records([row]),
        *guard_params,
        json_records(runs),
        json_records(lines),
    ]
    rows = execute(using, _insert_run_sql(using, guard), params)
    if not rows or not rows[0][0]:
        return False
    mark_saved([execution], using)
    return True


# --- A run's write: its row, new log lines, node runs ----------------------------------------

# What a run's write gives of its node runs (which exist from its start): their state, and
# what identifies them.
NODE_RUN_WRITE = ("id", "execution_id", "node_id", "type", *NODE_RUN_STATE_FIELDS)


@lru_cache(maxsize=STATEMENT_CACHE_SIZE)  # one entry per changed-fields shape: bounded
def _write_run_sql(
    using: str, names: tuple[str, ...], guarded: bool, with_logs: bool, with_node_runs: bool
) -> str:
    """The guarded UPDATE as a CTE; the writes select from it, so no row means no write.

    New log lines and the node runs' states each come as one JSON parameter
    (`autoflow.statements.json_records`).
    """
    connection = connection_for(using)
    quote = connection.ops.quote_name
    parts = [f"run AS ({_guarded_update_sql(using, names, guarded)})"]
    if with_logs:
        fields = fields_of(ExecutionLog, LOG_VALUES)
        columns = columns_sql(connection, fields)
        # Numbered in order within the seqs the UPDATE reserved (the first parameter here is
        # the line count, as the UPDATE's first one).
        parts.append(
            f"logs AS (INSERT INTO {quote(ExecutionLog._meta.db_table)} "  # noqa: S608
            f"({columns}, {quote('seq')}) "
            f"SELECT {columns}, run.next_log_seq - %s + v.ordinal - 1 FROM run, "
            f"ROWS FROM (json_to_recordset(%s::json) AS ({record_columns_sql(connection, fields)}))"
            f" WITH ORDINALITY AS v({columns}, ordinal))"
        )
    if with_node_runs:
        # An upsert, never an insert (every node run exists from the run's start): the
        # conflict finds each row through the primary key, where an UPDATE ... FROM the
        # recordset is planned as a hash join over a scan of the whole table. `position`,
        # which an insert would need, is never written.
        fields = fields_of(NodeRun, NODE_RUN_WRITE)
        columns = columns_sql(connection, fields)
        updates = ", ".join(
            f"{quote(str(f.column))} = EXCLUDED.{quote(str(f.column))}"
            for f in fields_of(NodeRun, NODE_RUN_STATE_FIELDS)
        )
        parts.append(
            f"node_runs AS (INSERT INTO {quote(NodeRun._meta.db_table)} "  # noqa: S608
            f"({columns}, {quote('position')}) SELECT {columns}, 0 FROM run, "
            f"json_to_recordset(%s::json) AS v({record_columns_sql(connection, fields)}) "
            f"ON CONFLICT ({quote(str(pk_of(NodeRun).column))}) DO UPDATE SET {updates})"
        )
    return f"WITH {', '.join(parts)} SELECT next_log_seq, cancel_requested FROM run"  # noqa: S608


def write_run(
    execution_id: uuid.UUID | str,
    *,
    changes: Mapping[str, Any],
    logs: Sequence[dict[str, Any]] = (),
    node_runs: Sequence[dict[str, Any]] = (),
    lease_owner: str | None = None,
    using: str = "default",
) -> tuple[int, bool] | None:
    """Apply `changes` to the run, append `logs` and overwrite `node_runs`' states, atomically.

    `logs`: dicts of `LOG_VALUES`; each gets the next seq of the run's counter as its `seq`.
    `node_runs`: dicts of `NODE_RUN_WRITE`, rows the run already has (only their states change).
    With `lease_owner`, nothing is written unless that worker holds the running execution.
    Returns `(next_log_seq, cancel_requested)`, or None when no row matched. A NUL or a lone
    surrogate in the lines or the node runs (the text of an error from elsewhere; a node's
    output with one has failed already) is stored as U+FFFD, in the dicts too, so what is
    published is what is stored (`autoflow.storable`). On PostgreSQL this is one statement,
    one round trip (a run's every checkpoint and its end write through here); elsewhere the
    same writes one after the other in a transaction.
    """
    connection = connection_for(using)
    # On every backend: making the JSON also scrubs the dicts, which SQLite's inserts below and
    # the messages published after the commit are made from.
    logs_json = _storable_records(logs) if logs else None
    runs_json = _storable_records(node_runs) if node_runs else None
    if connection.vendor != "postgresql":
        with transaction.atomic(using=using, savepoint=False):
            returned = update_execution(
                execution_id,
                log_lines=len(logs),
                changes=changes,
                lease_owner=lease_owner,
                using=using,
            )
            if returned is not None:
                _number(logs, returned[0])
                insert_objects([ExecutionLog(**row) for row in logs], using=using)
                insert_objects(
                    [NodeRun(**row) for row in node_runs],
                    update_fields=NODE_RUN_STATE_FIELDS,
                    using=using,
                )
        return returned
    names = tuple(changes)
    params = _update_params(execution_id, names, changes, len(logs), lease_owner, using)
    if logs_json is not None:
        params += [len(logs), logs_json]
    if runs_json is not None:
        params.append(runs_json)
    sql = _write_run_sql(using, names, lease_owner is not None, bool(logs), bool(node_runs))
    rows = execute(using, sql, params)
    if not rows:
        return None
    next_seq, cancel = convert_rows(using, Execution, ("next_log_seq", "cancel_requested"), rows)[0]
    _number(logs, int(next_seq))
    return int(next_seq), bool(cancel)


def _storable_records(rows: Sequence[dict[str, Any]]) -> str:
    """`json_records`, with any NUL or lone surrogate in the rows' strings replaced (in the
    rows themselves)."""
    encoded = json_records(rows)
    if json_storable(encoded):
        return encoded
    for row in rows:
        row.update({name: scrubbed(value) for name, value in row.items()})
    return json_records(rows)


def _number(logs: Sequence[dict[str, Any]], next_seq: int) -> None:
    first = next_seq - len(logs)
    for index, row in enumerate(logs):
        row["seq"] = first + index


def _as_dicts(
    using: str, model: type[Model], names: tuple[str, ...], rows: Sequence[Sequence[Any]]
) -> list[dict[str, Any]]:
    """Rows of the `names` columns, converted as the ORM would, as dicts keyed by `names`."""
    return [dict(zip(names, row, strict=True)) for row in convert_rows(using, model, names, rows)]


# --- Node runs --------------------------------------------------------------------------------


@cache
def _node_runs_sql(using: str, names: tuple[str, ...]) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns_sql(connection, fields_of(NodeRun, names))} "  # noqa: S608
        f"FROM {quote(NodeRun._meta.db_table)} WHERE execution_id = %s ORDER BY position"
    )


def node_runs_of(execution_id: object, *, using: str = "default") -> list[dict[str, Any]]:
    """An execution's node runs in graph order, as dicts of `NODE_RUN_READ`."""
    connection = connection_for(using)
    prepared = pk_of(Execution).get_db_prep_value(execution_id, connection)
    rows = execute(using, _node_runs_sql(using, NODE_RUN_READ), [prepared])
    return _as_dicts(using, NodeRun, NODE_RUN_READ, rows or [])


# --- Log lines ---------------------------------------------------------------------------------


@cache
def _log_lines_sql(using: str) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    return (
        f"SELECT {columns_sql(connection, fields_of(ExecutionLog, LOG_LINE_READ))} "  # noqa: S608
        f"FROM {quote(ExecutionLog._meta.db_table)} "
        "WHERE execution_id = %s AND seq > %s AND seq <= %s ORDER BY seq LIMIT %s"
    )


def log_lines_of(
    execution_id: object, *, after_seq: int, up_to_seq: int, limit: int, using: str = "default"
) -> list[dict[str, Any]]:
    """Stored lines with `after_seq < seq <= up_to_seq`, oldest first, as `LOG_LINE_READ` dicts.

    Every WebSocket subscription replays its run's lines from here.
    """
    connection = connection_for(using)
    prepared = pk_of(Execution).get_db_prep_value(execution_id, connection)
    rows = execute(using, _log_lines_sql(using), [prepared, after_seq, up_to_seq, limit])
    return _as_dicts(using, ExecutionLog, LOG_LINE_READ, rows or [])


# --- Reading a run for the API ----------------------------------------------------------------


@cache
def _execution_and_owner_sql(using: str, with_node_runs: bool) -> str:
    connection = connection_for(using)
    quote = connection.ops.quote_name
    execution_table = quote(Execution._meta.db_table)
    workflow_table = quote(Workflow._meta.db_table)
    row = (
        f"SELECT {columns_sql(connection, Execution._meta.concrete_fields)}, "  # noqa: S608
        f"(SELECT {quote('owner_id')} FROM {workflow_table} "
        f"WHERE {workflow_table}.{quote('id')} = {execution_table}.{quote('workflow_id')}) "
        f"FROM {execution_table} WHERE {execution_table}.{quote('id')} = %s"
    )
    if not with_node_runs:
        return row
    return _row_and_node_runs_sql(using, row, len(EXECUTION_ALL) + 1, NODE_RUN_ALL)


def execution_and_owner(
    execution_id: object, *, using: str = "default"
) -> tuple[Execution, Any] | None:
    """An execution and its workflow's owner id in one statement; None when there is none.

    A malformed id (not a UUID) finds nothing (`autoflow.statements.prepared_key`).
    """
    found = _read_execution(execution_id, with_node_runs=False, using=using)
    return None if found is None else (found[0], found[1])


def execution_owner_and_node_runs(
    execution_id: object, *, using: str = "default"
) -> tuple[Execution, Any, list[NodeRun]] | None:
    """`execution_and_owner`, and the run's node runs in graph order, in the same statement."""
    return _read_execution(execution_id, with_node_runs=True, using=using)


def _read_execution(
    execution_id: object, *, with_node_runs: bool, using: str
) -> tuple[Execution, Any, list[NodeRun]] | None:
    prepared = prepared_key(pk_of(Execution), execution_id, using)
    if prepared is None:
        return None
    rows = execute(using, _execution_and_owner_sql(using, with_node_runs), [prepared])
    if not rows:
        return None
    row, run_rows = rows[0], list[tuple[Any, ...]]()
    if with_node_runs:
        row, run_rows = _split_row_and_node_runs(rows, len(EXECUTION_ALL) + 1)
    *values, owner_id = row
    converted = convert_rows(using, Execution, EXECUTION_ALL, [values])[0]
    [[owner]] = convert_rows(using, Workflow, ("owner_id",), [[owner_id]])
    runs = [
        NodeRun.from_db(using, list(NODE_RUN_ALL), values)
        for values in convert_rows(using, NodeRun, NODE_RUN_ALL, run_rows)
    ]
    return Execution.from_db(using, list(EXECUTION_ALL), converted), owner, runs
