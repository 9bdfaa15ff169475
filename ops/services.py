"""Operator services: execution retention, workflow export/import."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from accounts.models import User
from autoflow.exceptions import GraphInvalid, ValidationFailed
from executions.models import TERMINAL_STATUSES, Execution, ExecutionStatus
from workflows.models import WebhookCall, Workflow
from workflows.services import workflow_create

logger = logging.getLogger(__name__)

EXPORT_FORMAT = "autoflow.workflows"
EXPORT_FORMAT_VERSION = 1
EXPORTED_FIELDS = ("name", "description", "graph", "tags", "is_public", "active")


def retention_days_by_status() -> dict[str, int]:
    """The configured retention per finished status, in days."""
    return {
        ExecutionStatus.SUCCEEDED: settings.EXECUTION_RETENTION_DAYS_SUCCEEDED,
        ExecutionStatus.FAILED: settings.EXECUTION_RETENTION_DAYS_FAILED,
        ExecutionStatus.CANCELLED: settings.EXECUTION_RETENTION_DAYS_CANCELLED,
    }


def executions_prune(
    *,
    older_than: dict[str, dt.timedelta],
    dry_run: bool = False,
    batch_size: int | None = None,
    now: dt.datetime | None = None,
) -> dict[str, int]:
    """Delete finished executions (with node runs and log) older than each status's age.

    Deletes in short batches, each its own transaction, so no lock is held for long and
    workers keep writing meanwhile. Returns how many executions each status lost (or would).
    """
    unknown = set(older_than) - set(TERMINAL_STATUSES)
    if unknown:
        raise ValidationFailed(
            "Only finished executions can be pruned.",
            details={"status": [f"Not a finished status: {', '.join(sorted(unknown))}."]},
        )
    now = now or timezone.now()
    size = batch_size or settings.EXECUTION_PRUNE_BATCH_SIZE
    counts: dict[str, int] = {}
    for status, age in sorted(older_than.items()):
        cutoff = now - age
        # created_at narrows through the (status, created_at) index; finished_at decides.
        rows = Execution.objects.filter(
            status=status, created_at__lt=cutoff, finished_at__lt=cutoff
        ).order_by()
        if dry_run:
            counts[status] = rows.count()
            continue
        deleted = 0
        while True:  # bounded: every pass deletes at least one row or stops
            batch = list(rows.values_list("pk", flat=True)[:size])
            if not batch:
                break
            with transaction.atomic():
                Execution.objects.filter(pk__in=batch, status__in=TERMINAL_STATUSES).delete()
            deleted += len(batch)
        counts[status] = deleted
    if not dry_run and any(counts.values()):
        logger.info("pruned executions: %s", counts)
    return counts


def webhook_calls_prune(*, older_than: dt.timedelta, dry_run: bool = False) -> int:
    """Delete webhook call records older than an age, in short batches; how many (would) go."""
    rows = WebhookCall.objects.filter(at__lt=timezone.now() - older_than).order_by()
    if dry_run:
        return rows.count()
    size = settings.EXECUTION_PRUNE_BATCH_SIZE
    deleted = 0
    while batch := list(rows.values_list("pk", flat=True)[:size]):  # each pass deletes rows
        deleted += WebhookCall.objects.filter(pk__in=batch).delete()[0]
    return deleted


def executions_prune_by_retention(*, dry_run: bool = False) -> dict[str, int]:
    """Prune with the per-status retention settings; then let PostgreSQL reuse the space.

    Webhook call records (`webhook_calls` in the counts) are kept as long as the longest-kept
    executions they may point to.
    """
    retention = retention_days_by_status()
    counts = executions_prune(
        older_than={status: dt.timedelta(days=days) for status, days in retention.items()},
        dry_run=dry_run,
    )
    counts["webhook_calls"] = webhook_calls_prune(
        older_than=dt.timedelta(days=max(retention.values())), dry_run=dry_run
    )
    if not dry_run and any(counts.values()):
        database_vacuum(tables=_execution_tables())
    return counts


def _execution_tables() -> list[str]:
    from executions.models import ExecutionLog, NodeRun

    return [model._meta.db_table for model in (ExecutionLog, NodeRun, Execution, WebhookCall)]


def database_vacuum(*, tables: Iterable[str]) -> None:
    """VACUUM ANALYZE the tables so freed rows are reused and the files stop growing."""
    if connection.vendor != "postgresql" or connection.in_atomic_block:
        return
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"VACUUM (ANALYZE) {connection.ops.quote_name(table)}")


def workflows_export(*, owner: User | None = None) -> dict[str, Any]:
    """Every workflow (or one owner's) as a portable document; secrets and ids left out."""
    rows = Workflow.objects.select_related("owner").order_by("owner__email", "name", "created_at")
    if owner is not None:
        rows = rows.filter(owner=owner)
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_FORMAT_VERSION,
        "workflows": [
            {
                **{field: getattr(workflow, field) for field in EXPORTED_FIELDS},
                "owner": workflow.owner.email,
            }
            for workflow in rows
        ],
    }


def _entry_errors(index: int, entry: Any) -> list[str]:
    if not isinstance(entry, dict):
        return [f"workflows[{index}] is not an object."]
    errors = []
    if not isinstance(entry.get("name"), str) or not entry["name"].strip():
        errors.append(f"workflows[{index}].name must be a non-empty string.")
    if not isinstance(entry.get("graph"), dict):
        errors.append(f"workflows[{index}].graph must be an object.")
    if not isinstance(entry.get("description", ""), str):
        errors.append(f"workflows[{index}].description must be a string.")
    tags = entry.get("tags", [])
    if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
        errors.append(f"workflows[{index}].tags must be a list of strings.")
    for flag in ("is_public", "active"):
        if not isinstance(entry.get(flag, False), bool):
            errors.append(f"workflows[{index}].{flag} must be true or false.")
    return errors


@transaction.atomic
def workflows_import(*, document: Any, owner: User) -> list[Workflow]:
    """Create the document's workflows for `owner`, all or none; each graph is validated."""
    if (
        not isinstance(document, dict)
        or document.get("format") != EXPORT_FORMAT
        or not isinstance(document.get("workflows"), list)
    ):
        raise ValidationFailed(
            f"Not an export file: expected {{'format': '{EXPORT_FORMAT}', 'workflows': [...]}}.",
            details={"file": ["Not an AutoFlow workflow export."]},
        )
    if document.get("version") != EXPORT_FORMAT_VERSION:
        raise ValidationFailed(
            f"Unsupported export version {document.get('version')!r}.",
            details={"version": [f"Expected {EXPORT_FORMAT_VERSION}."]},
        )
    entries = document["workflows"]
    errors = [error for index, entry in enumerate(entries) for error in _entry_errors(index, entry)]
    if errors:
        raise ValidationFailed("; ".join(errors), details={"workflows": errors})
    created = []
    for index, entry in enumerate(entries):
        try:
            workflow = workflow_create(
                owner=owner,
                name=entry["name"],
                description=entry.get("description", ""),
                graph=entry["graph"],
                tags=entry.get("tags", []),
                is_public=entry.get("is_public", False),
                active=entry.get("active", False),
            )
        except GraphInvalid as error:
            raise GraphInvalid(
                f"workflows[{index}] ({entry['name']!r}): {error.message}",
                details={"index": index, **error.details},
            ) from error
        created.append(workflow)
    return created
