"""Execution endpoints, including `/workflows/{id}/execute` and `/stats` (owned by this app)."""

from __future__ import annotations

import datetime as dt
from typing import Any, cast

import django_filters
from django import forms as django_forms
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import filters, serializers, status
from rest_framework.exceptions import APIException
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from autoflow.exceptions import ValidationFailed
from autoflow.schema import error_responses
from autoflow.serializers import BuiltOnceModelSerializer
from executions import selectors, services
from executions.models import Execution, ExecutionStatus, ExecutionTrigger, NodeRun
from workflows.models import Workflow
from workflows.selectors import workflow_get_for_user, workflow_get_for_write

READ_SCOPES = {"read": "executions:read", "write": "executions:write"}
IDEMPOTENCY_KEY_MAX_LENGTH = 255


def _user(request: Request) -> User:
    return cast(User, request.user)


class NodeRunOutputSerializer(BuiltOnceModelSerializer[NodeRun]):
    class Meta:
        model = NodeRun
        fields = (
            "node_id",
            "type",
            "status",
            "attempts",
            "started_at",
            "finished_at",
            "output",
            "error",
            "cached",
        )


class ExecutionOutputSerializer(BuiltOnceModelSerializer[Execution]):
    node_runs = NodeRunOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Execution
        fields: tuple[str, ...] = (
            "id",
            "workflow",
            "workflow_version",
            "status",
            "trigger",
            "input",
            "output",
            "error",
            "retry_of",
            "created_at",
            "started_at",
            "finished_at",
            "duration_ms",
            "node_runs",
        )


class ExecutionListItemSerializer(ExecutionOutputSerializer):
    """A list row: the execution without its node runs (fetch one for those)."""

    class Meta(ExecutionOutputSerializer.Meta):
        fields = ExecutionOutputSerializer.Meta.fields[:-1]  # all but node_runs


class ExecutionStartedSerializer(serializers.Serializer[Any]):
    execution_id = serializers.UUIDField()
    status = serializers.ChoiceField(choices=ExecutionStatus.choices)


def _started(execution_id: object, execution_status: str) -> Response:
    return Response(
        {"execution_id": str(execution_id), "status": execution_status},
        status=status.HTTP_202_ACCEPTED,
    )


class WorkflowExecuteView(APIView):
    scopes = {"write": "executions:write"}

    class ExecuteInputSerializer(serializers.Serializer[Any]):
        input = serializers.JSONField(required=False, default=dict)

        def validate_input(self, value: Any) -> Any:
            if value is None:
                return {}
            if not isinstance(value, dict):
                raise serializers.ValidationError("Expected a JSON object.")
            return value

    @extend_schema(
        request=ExecuteInputSerializer,
        parameters=[
            OpenApiParameter(
                "Idempotency-Key",
                str,
                OpenApiParameter.HEADER,
                required=False,
                description="Replays the first answer for 24 h; another body → 409.",
            )
        ],
        responses={
            202: ExecutionStartedSerializer,
            **error_responses(400, 401, 403, 404, 409, 413, 429),
        },
        summary="Run a workflow now (answers at once; the run happens in the background)",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        user = _user(request)
        # A replay (Idempotency-Key) answers from its record: only a read says whether the
        # workflow is still there to answer it.
        known = None
        if not request.headers.get("Idempotency-Key"):
            known = services.owned_workflow_known(user=user, workflow_id=workflow_id)
        if known is not None:
            try:
                return self._execute(request, known[0], only_if=known[1])
            except (APIException, services.WorkflowChanged):
                # A refusal may be the stale copy's (a 400 before a 404, say): read the
                # workflow and decide again.
                services.owned_workflow_forget(user=user, workflow_id=workflow_id)
        workflow = workflow_get_for_write(user=user, workflow_id=workflow_id)
        response = self._execute(request, workflow)
        services.owned_workflow_started(user=user, workflow=workflow)
        return response

    def _execute(
        self, request: Request, workflow: Workflow, only_if: dict[str, Any] | None = None
    ) -> Response:
        data = request.data if request.data not in (None, "") else {}
        serializer = self.ExecuteInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        key = request.headers.get("Idempotency-Key") or None
        if key is not None and len(key) > IDEMPOTENCY_KEY_MAX_LENGTH:
            raise ValidationFailed(
                "The Idempotency-Key header is too long.",
                details={"Idempotency-Key": [f"At most {IDEMPOTENCY_KEY_MAX_LENGTH} characters."]},
            )
        execution, _ = services.execution_start(
            workflow=workflow,
            trigger=ExecutionTrigger.MANUAL,
            input=serializer.validated_data["input"],
            user=_user(request),
            idempotency_key=key,
            only_if=only_if,
        )
        # A replay answers what the first call answered: the run was queued then.
        return _started(execution.pk, ExecutionStatus.QUEUED)


class StatsOutputSerializer(serializers.Serializer[Any]):
    class LastExecution(serializers.Serializer[Any]):
        id = serializers.UUIDField()
        status = serializers.CharField()
        created_at = serializers.DateTimeField()

    total = serializers.IntegerField()
    by_status = serializers.DictField(child=serializers.IntegerField())
    success_rate = serializers.FloatField(allow_null=True)
    avg_duration_ms = serializers.FloatField(allow_null=True)
    p95_duration_ms = serializers.IntegerField(allow_null=True)
    last_execution = LastExecution(allow_null=True)


class WorkflowStatsView(APIView):
    scopes = {"read": "workflows:read"}

    @extend_schema(
        responses={200: StatsOutputSerializer, **error_responses(401, 403, 404, 429)},
        summary="Execution statistics of a workflow",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get_for_user(user=_user(request), workflow_id=workflow_id)
        stats = selectors.workflow_execution_stats(workflow=workflow)
        return Response(StatsOutputSerializer(stats).data)


class UtcIsoDateTimeField(django_filters.fields.IsoDateTimeField):
    """An ISO time converted to UTC: PostgreSQL refuses UTC offsets beyond ±15:59."""

    def to_python(self, value: Any) -> dt.datetime | None:
        parsed = super().to_python(value)
        if parsed is None or parsed.tzinfo is None:
            return parsed
        try:
            return parsed.astimezone(dt.UTC)
        except OverflowError as error:
            raise django_forms.ValidationError("The time is out of range.") from error


class UtcIsoDateTimeFilter(django_filters.IsoDateTimeFilter):
    field_class = UtcIsoDateTimeField


class ExecutionFilter(django_filters.FilterSet):
    workflow = django_filters.UUIDFilter(field_name="workflow_id")
    status = django_filters.ChoiceFilter(choices=ExecutionStatus.choices)
    trigger = django_filters.ChoiceFilter(choices=ExecutionTrigger.choices)
    created_after = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = UtcIsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Execution
        fields = ("workflow", "status", "trigger", "created_after", "created_before")


class ExecutionListView(GenericAPIView[Execution]):
    scopes = READ_SCOPES
    serializer_class = ExecutionListItemSerializer
    filterset_class = ExecutionFilter
    filter_backends = [
        django_filters.rest_framework.DjangoFilterBackend,
        filters.OrderingFilter,
    ]
    ordering_fields = ("created_at", "started_at", "finished_at", "duration_ms", "status")
    ordering = ("-created_at",)

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return Execution.objects.none()
        return selectors.execution_list_for_user(user=_user(self.request))

    @extend_schema(
        responses={
            200: ExecutionListItemSerializer(many=True),
            **error_responses(400, 401, 403, 429),
        },
        summary="List executions of your workflows (admins: all)",
    )
    def get(self, request: Request) -> Response:
        queryset = self.filter_queryset(self.get_queryset())
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(ExecutionListItemSerializer(page, many=True).data)


class ExecutionDetailView(APIView):
    scopes = READ_SCOPES

    @extend_schema(
        responses={200: ExecutionOutputSerializer, **error_responses(401, 403, 404, 429)},
        summary="Show an execution with its node runs",
    )
    def get(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_detail_for_user(
            user=_user(request), execution_id=execution_id
        )
        return Response(ExecutionOutputSerializer(execution).data)

    @extend_schema(
        responses={204: None, **error_responses(401, 403, 404, 409, 429)},
        summary="Delete a finished execution",
    )
    def delete(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get_for_user(user=_user(request), execution_id=execution_id)
        services.execution_delete(execution=execution)
        return Response(status=status.HTTP_204_NO_CONTENT)


class LogLineSerializer(serializers.Serializer[Any]):
    seq = serializers.IntegerField()
    ts = serializers.DateTimeField()
    level = serializers.CharField()
    node_id = serializers.CharField(allow_null=True)
    message = serializers.CharField()
    data = serializers.JSONField(allow_null=True)  # type: ignore[assignment]


class LogsOutputSerializer(serializers.Serializer[Any]):
    results = LogLineSerializer(many=True)
    has_more = serializers.BooleanField()


class ExecutionLogsView(APIView):
    scopes = READ_SCOPES

    class LogsQuerySerializer(serializers.Serializer[Any]):
        after_seq = serializers.IntegerField(min_value=0, default=0)
        limit = serializers.IntegerField(
            min_value=1, max_value=selectors.LOGS_MAX_LIMIT, default=selectors.LOGS_DEFAULT_LIMIT
        )

    @extend_schema(
        parameters=[LogsQuerySerializer],
        responses={200: LogsOutputSerializer, **error_responses(400, 401, 403, 404, 429)},
        summary="Log lines of an execution after a sequence number",
    )
    def get(self, request: Request, execution_id: str) -> Response:
        query = self.LogsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        execution = selectors.execution_get_for_user(user=_user(request), execution_id=execution_id)
        rows, has_more = selectors.execution_logs(
            execution=execution,
            after_seq=query.validated_data["after_seq"],
            limit=query.validated_data["limit"],
        )
        return Response(
            {"results": [services.log_line_body(row) for row in rows], "has_more": has_more}
        )


class ExecutionRetryView(APIView):
    scopes = READ_SCOPES

    class RetryInputSerializer(serializers.Serializer[Any]):
        from_failed_node = serializers.BooleanField(default=False)
        version = serializers.ChoiceField(choices=["same", "latest"], default="same")

    @extend_schema(
        request=RetryInputSerializer,
        responses={
            202: ExecutionStartedSerializer,
            **error_responses(400, 401, 403, 404, 409, 429),
        },
        summary="Retry a failed or cancelled execution (optionally from the failed node)",
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get_for_user(user=_user(request), execution_id=execution_id)
        data = request.data if request.data not in (None, "") else {}
        serializer = self.RetryInputSerializer(data=data)
        serializer.is_valid(raise_exception=True)
        retried = services.execution_retry(
            execution=execution, by=_user(request), **serializer.validated_data
        )
        return _started(retried.pk, retried.status)


class ExecutionCancelView(APIView):
    scopes = READ_SCOPES

    @extend_schema(
        request=None,
        responses={202: ExecutionStartedSerializer, **error_responses(401, 403, 404, 409, 429)},
        summary="Cancel an execution (a running one stops before its next node)",
    )
    def post(self, request: Request, execution_id: str) -> Response:
        execution = selectors.execution_get_for_user(user=_user(request), execution_id=execution_id)
        reported = services.execution_cancel(execution=execution, by=_user(request))
        return _started(execution.pk, reported)
