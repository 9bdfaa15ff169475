"""Workflows, their version history, credentials, and webhook call records."""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone


class Workflow(models.Model):
    """A graph of nodes a user draws; every accepted write bumps `version` and stores a row."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # No index of its own: `workflow_owner_updated` starts with the owner and serves it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="workflows",
        db_index=False,
    )
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    graph = models.JSONField(default=dict)
    tags = models.JSONField(default=list, blank=True)
    is_public = models.BooleanField(default=False)
    active = models.BooleanField(default=False)
    version = models.PositiveIntegerField(default=1)
    webhook_token = models.CharField(max_length=64, unique=True, null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-updated_at",)
        indexes = [
            # Matches the list's default order (id breaks ties), so a page is an index range.
            models.Index(fields=["owner", "-updated_at", "-id"], name="workflow_owner_updated"),
            models.Index(fields=["is_public", "-updated_at"], name="workflow_public_updated"),
        ]

    def __str__(self) -> str:
        return self.name

    @classmethod
    def known(cls, values: dict[str, Any]) -> Workflow:
        """A workflow of which only `values` (by attribute name) are loaded, as a start needs
        them; any other field is read from the database if something asks for it."""
        names = [field.attname for field in cls._meta.concrete_fields if field.attname in values]
        # `from_db` takes the values in the model's field order.
        return cls.from_db("default", names, [values[name] for name in names])


class WorkflowVersion(models.Model):
    """One saved version of a workflow: what an execution ran and what restore brings back."""

    # Indexed by `workflow_version_unique`, which leads with it.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="versions", db_index=False
    )
    version = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    graph = models.JSONField(default=dict)
    tags = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-version",)
        constraints = [
            models.UniqueConstraint(fields=["workflow", "version"], name="workflow_version_unique")
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.version}"


class CredentialType(models.TextChoices):
    SMTP = "smtp"
    HTTP_HEADER = "http_header"
    HTTP_BASIC = "http_basic"
    HTTP_BEARER = "http_bearer"


class Credential(models.Model):
    """A secret a node uses; secret fields are stored only encrypted (AES-256-GCM)."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Indexed by `credential_owner_created`, which leads with it.
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.CASCADE,
        related_name="credentials",
        db_index=False,
    )
    name = models.CharField(max_length=200)
    type = models.CharField(max_length=32, choices=CredentialType.choices)
    # Non-secret fields in the clear (host, port, username...).
    data = models.JSONField(default=dict)
    # Secret fields as one AES-256-GCM blob: base64(nonce || ciphertext), under `key_id`.
    secret_ciphertext = models.TextField(blank=True, default="")
    key_id = models.CharField(max_length=32, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ("-created_at",)
        indexes = [models.Index(fields=["owner", "-created_at"], name="credential_owner_created")]

    def __str__(self) -> str:
        return f"{self.name} ({self.type})"


class WebhookCall(models.Model):
    """One call to a workflow's webhook URL and what it answered (the "why 404?" trail)."""

    # Indexed by `webhookcall_workflow_at`, which leads with it.
    workflow = models.ForeignKey(
        Workflow, on_delete=models.CASCADE, related_name="webhook_calls", db_index=False
    )
    at = models.DateTimeField(default=timezone.now)
    method = models.CharField(max_length=10)
    status = models.PositiveSmallIntegerField()
    execution_id = models.UUIDField(null=True, blank=True)

    class Meta:
        ordering = ("-at",)
        indexes = [
            models.Index(fields=["workflow", "-at"], name="webhookcall_workflow_at"),
            # Retention deletes by age alone, a batch at a time.
            models.Index(fields=["at"], name="webhookcall_at"),
        ]

    def __str__(self) -> str:
        return f"{self.method} {self.status} at {self.at:%Y-%m-%d %H:%M:%S}"
