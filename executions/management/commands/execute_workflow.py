"""`manage.py execute_workflow <id> [--input JSON] [--wait]`: run a workflow from the shell."""

from __future__ import annotations

import json
import time
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from executions.models import TERMINAL_STATUSES, Execution, ExecutionTrigger
from executions.services import execution_start
from workflows.models import Workflow

POLL_SECONDS = 0.2


class Command(BaseCommand):
    help = "Queue an execution of a workflow; with --wait, print its result (non-zero on failure)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("workflow_id")
        parser.add_argument("--input", default="{}", help="The execution input, a JSON object.")
        parser.add_argument("--wait", action="store_true", help="Wait for the result.")
        parser.add_argument(
            "--timeout", type=float, default=3600.0, help="Seconds --wait waits at most."
        )

    def handle(self, *args: Any, **options: Any) -> None:
        try:
            payload = json.loads(options["input"])
        except json.JSONDecodeError as error:
            raise CommandError(f"--input is not JSON: {error}") from None
        if not isinstance(payload, dict):
            raise CommandError("--input must be a JSON object.")
        workflow = Workflow.objects.filter(pk=options["workflow_id"]).first()
        if workflow is None:
            raise CommandError(f"No workflow {options['workflow_id']}.")
        execution, _ = execution_start(
            workflow=workflow, trigger=ExecutionTrigger.MANUAL, input=payload, user=None
        )
        self.stdout.write(f"execution {execution.pk} queued")
        if not options["wait"]:
            return
        deadline = time.monotonic() + options["timeout"]
        while time.monotonic() < deadline:
            execution = Execution.objects.get(pk=execution.pk)
            if execution.status in TERMINAL_STATUSES:
                break
            time.sleep(POLL_SECONDS)
        result = {
            "execution_id": str(execution.pk),
            "status": execution.status,
            "output": execution.output,
            "error": execution.error,
            "duration_ms": execution.duration_ms,
        }
        self.stdout.write(json.dumps(result, indent=2, default=str))
        if execution.status != "succeeded":
            raise CommandError(f"execution {execution.pk} ended {execution.status}")
