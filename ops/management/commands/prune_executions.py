"""`manage.py prune_executions --older-than 30d [--status ...] [--dry-run]`: retention by hand."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from autoflow.exceptions import AppError
from executions.models import TERMINAL_STATUSES
from ops.services import executions_prune, executions_prune_by_retention

DURATION = re.compile(r"^(\d+)([dhm])$")
UNITS = {"d": "days", "h": "hours", "m": "minutes"}


def parse_age(text: str) -> dt.timedelta:
    """`30d`, `12h` or `90m` as a timedelta."""
    match = DURATION.match(text.strip())
    if match is None:
        raise CommandError(f"--older-than must look like 30d, 12h or 90m, not {text!r}.")
    return dt.timedelta(**{UNITS[match.group(2)]: int(match.group(1))})


class Command(BaseCommand):
    help = (
        "Delete finished executions (with their node runs and log) older than an age, in "
        "batches. Without --older-than, each status keeps EXECUTION_RETENTION_DAYS_<STATUS>, "
        "and webhook call records go after the longest of them."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--older-than", help="Age such as 30d, 12h or 90m (default: the retention settings)."
        )
        parser.add_argument(
            "--status",
            action="append",
            choices=sorted(TERMINAL_STATUSES),
            help="Only this status (repeatable; default: every finished status).",
        )
        parser.add_argument(
            "--dry-run", action="store_true", help="Count what would go; delete nothing."
        )
        parser.add_argument("--batch-size", type=int, help="Rows deleted per transaction.")

    def handle(self, *args: Any, **options: Any) -> None:
        statuses = options["status"] or sorted(TERMINAL_STATUSES)
        if options["batch_size"] is not None and options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")
        try:
            if options["older_than"] is None and options["status"] is None:
                counts = executions_prune_by_retention(dry_run=options["dry_run"])
            else:
                if options["older_than"] is None:
                    raise CommandError("--status needs --older-than.")
                age = parse_age(options["older_than"])
                counts = executions_prune(
                    older_than=dict.fromkeys(statuses, age),
                    dry_run=options["dry_run"],
                    batch_size=options["batch_size"],
                )
        except AppError as error:
            raise CommandError(error.message) from error
        verb = "would delete" if options["dry_run"] else "deleted"
        calls = counts.pop("webhook_calls", None)
        for status, count in sorted(counts.items()):
            self.stdout.write(f"{status}: {verb} {count}")
        self.stdout.write(f"total: {verb} {sum(counts.values())}")
        if calls is not None:
            self.stdout.write(f"webhook calls: {verb} {calls}")
