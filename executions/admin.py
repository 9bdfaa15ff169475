"""Admin: executions with their node runs and log inline, filterable by status and trigger."""

from __future__ import annotations

from django.contrib import admin

from executions.models import Execution, ExecutionLog, NodeRun


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
    list_display = ("id", "workflow", "status", "trigger", "created_at", "duration_ms")
    list_filter = ("status", "trigger", "created_at")
    search_fields = ("id", "workflow__name")
    date_hierarchy = "created_at"
    list_select_related = ("workflow",)
    raw_id_fields = ("workflow", "version", "retry_of", "created_by")
    readonly_fields = (
        "status",
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
