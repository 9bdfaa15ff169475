"""`manage.py export_workflows [--owner EMAIL] > file.json`: workflows as a portable file."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from accounts.models import User
from ops.services import workflows_export


class Command(BaseCommand):
    help = (
        "Write workflows (name, description, graph, tags, is_public, active) as JSON to "
        "stdout or --output; import them with import_workflows."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--owner", help="Only this user's workflows (e-mail).")
        parser.add_argument("--output", help="Write to this file instead of stdout.")

    def handle(self, *args: Any, **options: Any) -> None:
        owner = None
        if options["owner"]:
            owner = User.objects.filter(email__iexact=options["owner"]).first()
            if owner is None:
                raise CommandError(f"No user with e-mail {options['owner']}.")
        text = json.dumps(workflows_export(owner=owner), indent=2, ensure_ascii=False)
        if options["output"]:
            try:
                with open(options["output"], "w", encoding="utf-8") as handle:
                    handle.write(text + "\n")
            except OSError as error:
                raise CommandError(f"Cannot write {options['output']}: {error}") from error
            return
        self.stdout.write(text)
