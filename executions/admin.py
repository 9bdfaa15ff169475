"""Admin: executions with their node runs and log inline, filters, cancel/retry actions.

Also adds the "execute now" action to the workflow admin: it needs `executions.services`, and
the dependency must point executions → workflows, never back.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from accounts.models import User
from autoflow.exceptions import AppError
from executions.models import Execution, ExecutionLog, ExecutionTrigger, NodeRun
from executions.services import execution_cancel, execution_retry, execution_start
from workflows.admin import WorkflowAdmin
from workflows.models import Workflow

# Filter choices come from the small tables, never from a scan of the executions.
FILTER_CHOICES_MAX = 200


class WorkflowListFilter(admin.SimpleListFilter):
    """Filter by workflow (the most recently updated ones are offered)."""

    title = "workflow"
    parameter_name = "workflow"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = Workflow.objects.order_by("-updated_at").values_list("pk", "name")
        return [(str(pk), name) for pk, name in rows[:FILTER_CHOICES_MAX]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(workflow_id=value) if value else queryset


class OwnerListFilter(admin.SimpleListFilter):
    """Filter by the owner of the execution's workflow."""

    title = "owner"
    parameter_name = "owner"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        rows = User.objects.filter(workflows__isnull=False).distinct().order_by("email")
        return [
            (str(pk), email) for pk, email in rows.values_list("pk", "email")[:FILTER_CHOICES_MAX]
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        value = self.value()
        return queryset.filter(workflow__owner_id=value) if value else queryset


class NodeRunInline(admin.TabularInline[NodeRun, Execution]):
    model = NodeRun
    extra = 0
    can_delete = False
    fields = (
        "node_id",
        "type",
        "status",
        "attempts",
        "started_at",
        "finished_at",
        "cached",
        "error",
    )
    readonly_fields = fields
    show_change_link = False


class ExecutionLogInline(admin.TabularInline[ExecutionLog, Execution]):
    model = ExecutionLog
    extra = 0
    can_delete = False
    fields = ("seq", "ts", "level", "node_id", "message")
    readonly_fields = fields
    ordering = ("seq",)
    max_num = 0


@admin.register(Execution)
class ExecutionAdmin(admin.ModelAdmin[Execution]):
    list_display = (
        "id",
        "workflow",
        "owner",
        "status",
        "trigger",
        "created_at",
        "duration_ms",
        "live_link",
    )
    list_filter = ("status", "trigger", WorkflowListFilter, OwnerListFilter, "created_at")
    search_fields = ("=id", "workflow__name")
    date_hierarchy = "created_at"
    list_select_related = ("workflow", "workflow__owner")
    # A full COUNT(*) over 100,000 rows on every page view buys nothing.
    show_full_result_count = False
    list_per_page = 100
    raw_id_fields = ("workflow", "version", "retry_of", "created_by")
    readonly_fields = (
        "status",
        "live_link",
        "lease_owner",
        "lease_expires_at",
        "wake_at",
        "enqueued_at",
        "recovery_count",
        "cancel_requested",
        "next_log_seq",
        "started_at",
        "finished_at",
        "duration_ms",
    )
    inlines = (NodeRunInline, ExecutionLogInline)
    actions = ("cancel_executions", "retry_executions")

    @admin.display(description="owner", ordering="workflow__owner__email")
    def owner(self, obj: Execution) -> str:
        return obj.workflow.owner.email

    @admin.display(description="live")
    def live_link(self, obj: Execution) -> str:
        return format_html('<a href="/executions/{}/live">live</a>', obj.pk)

    @admin.action(description="Cancel the selected executions")
    def cancel_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        done, refused = 0, []
        for execution in queryset:
            try:
                execution_cancel(execution=execution, by=request.user)  # type: ignore[arg-type]
                done += 1
            except AppError as error:
                refused.append(f"{execution.pk}: {error.message}")
        _report(request, f"Cancelled (or asked to stop) {done} execution(s).", refused)

    @admin.action(description="Retry the selected executions")
    def retry_executions(self, request: HttpRequest, queryset: QuerySet[Execution]) -> None:
        done, refused = 0, []
        for execution in queryset.select_related("workflow", "version"):
            try:
                execution_retry(execution=execution, by=request.user)  # type: ignore[arg-type]
                done += 1
            except AppError as error:
                refused.append(f"{execution.pk}: {error.message}")
        _report(request, f"Queued {done} retry execution(s).", refused)


def _report(request: HttpRequest, summary: str, refused: list[str]) -> None:
    messages.success(request, summary)
    if refused:
        messages.warning(request, "Refused: " + "; ".join(refused[:20]))


@admin.action(description="Execute now")
def workflow_execute_now(
    modeladmin: admin.ModelAdmin[Workflow], request: HttpRequest, queryset: QuerySet[Workflow]
) -> None:
    """Queue a manual execution of each selected workflow, as the API's execute does."""
    started, refused = [], []
    for workflow in queryset:
        try:
            execution, _ = execution_start(
                workflow=workflow,
                trigger=ExecutionTrigger.MANUAL,
                input={},
                user=request.user,  # type: ignore[arg-type]
            )
            started.append(str(execution.pk))
        except AppError as error:
            refused.append(f"{workflow.name}: {error.message}")
    _report(request, f"Queued {len(started)} execution(s): {', '.join(started[:20])}", refused)


WorkflowAdmin.actions = (*(WorkflowAdmin.actions or ()), workflow_execute_now)  # type: ignore[misc]
