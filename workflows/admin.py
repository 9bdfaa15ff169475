"""Admin for workflows (readable graph, version history) and credentials (secrets never shown)."""

from __future__ import annotations

import json
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from autoflow.exceptions import AppError
from workflows.credentials import credential_masked_data, credential_secret_fields
from workflows.models import Credential, WebhookCall, Workflow, WorkflowVersion
from workflows.selectors import workflows_with_tags
from workflows.services import workflow_delete, workflow_update


def _pretty_json(value: Any) -> str:
    return format_html(
        '<pre style="white-space: pre-wrap; max-height: 40em; overflow: auto">{}</pre>',
        json.dumps(value, indent=2, sort_keys=False, ensure_ascii=False),
    )


class TagListFilter(admin.SimpleListFilter):
    """Filter by one tag among those in use (works on SQLite and PostgreSQL)."""

    title = "tag"
    parameter_name = "tag"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        tags: set[str] = set()
        # Bounded: the filter offers the tags of the most recent workflows only.
        for row in Workflow.objects.order_by("-updated_at").values_list("tags", flat=True)[:2000]:
            tags.update(tag for tag in row or [] if isinstance(tag, str))
        return [(tag, tag) for tag in sorted(tags)[:100]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return workflows_with_tags(queryset, [value]) if value else queryset


class WorkflowVersionInline(admin.TabularInline[WorkflowVersion, Workflow]):
    model = WorkflowVersion
    extra = 0
    can_delete = False
    show_change_link = True
    fields = ("version", "name", "created_by", "created_at")
    readonly_fields = fields
    ordering = ("-version",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(admin.ModelAdmin[Workflow]):
    list_display = ("name", "owner", "is_public", "active", "version", "updated_at")
    list_filter = (
        "is_public",
        "active",
        TagListFilter,
        ("owner", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = ("name", "description", "owner__email", "owner__name")
    list_select_related = ("owner",)
    ordering = ("-updated_at",)
    date_hierarchy = "updated_at"
    # The graph is changed through the API, where it is validated and versioned.
    readonly_fields = (
        "id",
        "owner",
        "graph_pretty",
        "tags",
        "version",
        "webhook_token",
        "created_at",
        "updated_at",
    )
    fields = (
        "id",
        "owner",
        "name",
        "description",
        "tags",
        "is_public",
        "active",
        "version",
        "graph_pretty",
        "webhook_token",
        "created_at",
        "updated_at",
    )
    inlines = (WorkflowVersionInline,)

    @admin.display(description="graph")
    def graph_pretty(self, obj: Workflow) -> str:
        return _pretty_json(obj.graph)

    def save_model(self, request: HttpRequest, obj: Workflow, form: Any, change: bool) -> None:
        editable = ("name", "description", "is_public", "active")
        changes = {name: getattr(obj, name) for name in form.changed_data if name in editable}
        if not changes:
            return
        # Through the service, so the admin's edit is validated and versioned like any other.
        current = Workflow.objects.get(pk=obj.pk)
        try:
            workflow_update(
                workflow=current,
                by=request.user,  # type: ignore[arg-type]
                expected_version=current.version,
                changes=changes,
            )
        except AppError as error:
            messages.error(request, f"Not saved: {error.message}")

    def delete_model(self, request: HttpRequest, obj: Workflow) -> None:
        workflow_delete(workflow=obj, by=request.user)  # type: ignore[arg-type]

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        for workflow in queryset:
            workflow_delete(workflow=workflow, by=request.user)  # type: ignore[arg-type]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # A workflow starts from a validated graph, which the API builds.
        return False


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(admin.ModelAdmin[WorkflowVersion]):
    list_display = ("workflow", "version", "name", "created_by", "created_at")
    list_select_related = ("workflow", "created_by")
    search_fields = ("workflow__name", "name")
    readonly_fields = (
        "workflow",
        "version",
        "name",
        "description",
        "graph_pretty",
        "tags",
        "created_by",
        "created_at",
    )
    exclude = ("graph",)

    @admin.display(description="graph")
    def graph_pretty(self, obj: WorkflowVersion) -> str:
        return _pretty_json(obj.graph)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Credential)
class CredentialAdmin(admin.ModelAdmin[Credential]):
    """Secrets are never shown: only whether each one is set."""

    list_display = ("name", "type", "owner", "created_at", "updated_at")
    list_filter = ("type",)
    search_fields = ("name", "owner__email")
    list_select_related = ("owner",)
    fields = ("id", "owner", "name", "type", "fields_shown", "key_id", "created_at", "updated_at")
    readonly_fields = ("id", "owner", "type", "fields_shown", "key_id", "created_at", "updated_at")

    @admin.display(description="data")
    def fields_shown(self, obj: Credential) -> str:
        secret_fields = credential_secret_fields(obj.type)
        shown = {
            name: ("set" if value is not None else "not set") if name in secret_fields else value
            for name, value in credential_masked_data(obj).items()
        }
        return _pretty_json(shown)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Secrets are entered through the API, which encrypts them.
        return False


@admin.register(WebhookCall)
class WebhookCallAdmin(admin.ModelAdmin[WebhookCall]):
    list_display = ("workflow", "method", "status", "at", "execution_id")
    list_filter = ("status", "method")
    list_select_related = ("workflow",)
    readonly_fields = ("workflow", "at", "method", "status", "execution_id")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
