"""Webhook info and token rotation under `/api/workflows/{id}/webhook`."""

from __future__ import annotations

from typing import Any, cast

from django.urls import reverse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from autoflow.schema import error_responses
from triggers import services
from triggers.config import trigger_params
from triggers.selectors import webhook_last_calls
from workflows.models import Workflow
from workflows.selectors import workflow_get_for_user, workflow_get_for_write

WORKFLOW_SCOPES = {"read": "workflows:read", "write": "workflows:write"}
REASON_INACTIVE = "inactive"
REASON_NO_TRIGGER = "no webhook trigger"


class WebhookCallOutputSerializer(serializers.Serializer[Any]):
    at = serializers.DateTimeField()
    method = serializers.CharField()
    status = serializers.IntegerField()
    execution_id = serializers.UUIDField(allow_null=True)


class WebhookOutputSerializer(serializers.Serializer[Any]):
    url = serializers.URLField(allow_null=True)
    methods = serializers.ListField(child=serializers.CharField())
    respond = serializers.CharField(allow_null=True)
    live = serializers.BooleanField()
    reasons = serializers.ListField(child=serializers.CharField())
    last_calls = WebhookCallOutputSerializer(many=True)


def _webhook_body(request: Request, workflow: Workflow) -> dict[str, Any]:
    params = trigger_params(workflow.graph)
    has_webhook = params is not None and params.mode == "webhook"
    reasons = []
    if not workflow.active:
        reasons.append(REASON_INACTIVE)
    if not has_webhook:
        reasons.append(REASON_NO_TRIGGER)
    url = None
    if has_webhook:
        # Workflows written around the services (fixtures, imports) get their token here.
        token = services.webhook_token_ensure(workflow=workflow)
        url = request.build_absolute_uri(reverse("webhook-receive", kwargs={"token": token}))
    return {
        "url": url,
        "methods": list(params.methods) if has_webhook and params is not None else [],
        "respond": params.respond if has_webhook and params is not None else None,
        "live": not reasons,
        "reasons": reasons,
        "last_calls": webhook_last_calls(workflow=workflow),
    }


class WebhookInfoView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        request=None,
        responses={200: WebhookOutputSerializer, **error_responses(401, 403, 404)},
        summary="Show a workflow's webhook URL, whether it is live (and why not), last calls",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get_for_user(user=cast(User, request.user), workflow_id=workflow_id)
        return Response(WebhookOutputSerializer(_webhook_body(request, workflow)).data)


class WebhookRotateView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        request=None,
        responses={200: WebhookOutputSerializer, **error_responses(401, 403, 404, 409)},
        summary="Give the workflow a new webhook URL; the old one stops at once",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = workflow_get_for_write(user=cast(User, request.user), workflow_id=workflow_id)
        workflow = services.webhook_token_rotate(workflow=workflow)
        return Response(WebhookOutputSerializer(_webhook_body(request, workflow)).data)
