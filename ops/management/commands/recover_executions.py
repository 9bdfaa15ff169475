"""`manage.py recover_executions`: run the engine's sweeper once, now."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import DatabaseError

from executions.services import executions_sweep


class Command(BaseCommand):
    help = (
        "Re-enqueue executions whose worker vanished (lapsed lease), queued ones nobody took "
        "and due waits; a run lost too often fails. Beat runs the same every "
        "EXECUTION_SWEEP_SECONDS."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="Print the counts as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            counts = executions_sweep()
        except DatabaseError as error:
            raise CommandError(f"The database is unavailable: {error}") from error
        if options["json"]:
            self.stdout.write(json.dumps(counts))
            return
        self.stdout.write(
            f"lost (lease lapsed): {counts['lost']}, stale queued: {counts['stale']}, "
            f"due waits: {counts['due']}, enqueued: {counts['enqueued']}"
        )
