"""Periodic account housekeeping."""

from celery import shared_task
from django.core.management import call_command


@shared_task(ignore_result=True)
def flush_expired_tokens_task() -> None:
    """Drop expired outstanding and blacklisted refresh tokens (simplejwt's own command)."""
    call_command("flushexpiredtokens")
