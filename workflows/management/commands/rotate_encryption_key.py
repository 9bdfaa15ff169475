"""Re-encrypt every credential secret under the current AUTOFLOW_ENCRYPTION_KEY."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from workflows.credentials import credential_reencrypt_all
from workflows.crypto import current_key_id


class Command(BaseCommand):
    help = (
        "Re-encrypt every credential under the current AUTOFLOW_ENCRYPTION_KEY. Deploy the new "
        "key with the old one in AUTOFLOW_ENCRYPTION_OLD_KEYS first; both decrypt meanwhile, "
        "so this runs without downtime. Drop the old key once it reports nothing left."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        changed = credential_reencrypt_all()
        self.stdout.write(f"Re-encrypted {changed} credential(s) under key {current_key_id()}.")
