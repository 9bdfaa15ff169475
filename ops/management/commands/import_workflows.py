"""`manage.py import_workflows file.json --owner EMAIL`: create exported workflows for a user."""

from __future__ import annotations

import json
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from autoflow.exceptions import AppError
from ops.services import workflows_import


class Command(BaseCommand):
    help = (
        "Create the workflows of an export_workflows file for --owner. Every graph is "
        "validated; one bad workflow imports nothing. Use - to read stdin."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("file", help="The export file (or - for stdin).")
        parser.add_argument("--owner", required=True, help="The e-mail of the new owner.")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = User.objects.filter(email__iexact=options["owner"]).first()
        if owner is None:
            raise CommandError(f"No user with e-mail {options['owner']}.")
        try:
            if options["file"] == "-":
                document = json.load(sys.stdin)
            else:
                with open(options["file"], encoding="utf-8") as handle:
                    document = json.load(handle)
        except OSError as error:
            raise CommandError(f"Cannot read {options['file']}: {error}") from error
        except json.JSONDecodeError as error:
            raise CommandError(f"{options['file']} is not JSON: {error}") from error
        try:
            created = workflows_import(document=document, owner=owner)
        except AppError as error:
            detail = f" {json.dumps(error.details, default=str)}" if error.details else ""
            raise CommandError(f"Nothing imported: {error.message}{detail}") from error
        for workflow in created:
            self.stdout.write(f"{workflow.pk} {workflow.name}")
        self.stdout.write(f"imported {len(created)} workflow(s) for {owner.email}")
