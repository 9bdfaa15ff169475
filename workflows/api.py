"""Workflow and credential endpoints (thin: validate input, call a service, serialize)."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from autoflow.exceptions import ValidationFailed, VersionRequired
from autoflow.schema import error_responses
from autoflow.serializers import BuiltOnceModelSerializer
from workflows import credentials as credential_services
from workflows import selectors, services
from workflows.models import Credential, CredentialType, Workflow, WorkflowVersion

WORKFLOW_SCOPES = {"read": "workflows:read", "write": "workflows:write"}
# Read-only fields a client may send back unchanged in a PUT of what it read.
READ_ONLY_ECHO = frozenset({"id", "owner", "created_at", "updated_at"})


def _user(request: Request) -> User:
    return cast(User, request.user)


def reject_unknown_fields(
    data: Any, allowed: set[str], *, ignored: frozenset[str] = frozenset()
) -> None:
    """Refuse body keys the endpoint does not know, so a typo never passes silently."""
    if not isinstance(data, dict):
        raise ValidationFailed(
            "The body must be a JSON object.", details={"non_field_errors": ["Expected an object."]}
        )
    unknown = sorted(set(data) - allowed - ignored)
    if unknown:
        raise ValidationFailed(
            f"Unknown field: {unknown[0]}.",
            details={name: ["Unknown field."] for name in unknown},
        )


class OwnerSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()


# --- Credentials ----------------------------------------------------------------------------


class CredentialOutputSerializer(BuiltOnceModelSerializer[Credential]):
    data = serializers.SerializerMethodField()  # type: ignore[assignment]

    class Meta:
        model = Credential
        fields = ("id", "name", "type", "data", "created_at", "updated_at")

    def get_data(self, obj: Credential) -> dict[str, Any]:
        return credential_services.credential_masked_data(obj)


class CredentialInputSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    type = serializers.ChoiceField(choices=CredentialType.choices)
    data = serializers.JSONField()  # type: ignore[assignment]

    def to_internal_value(self, data: Any) -> Any:
        reject_unknown_fields(
            data, set(self.fields), ignored=frozenset({"id", "created_at", "updated_at"})
        )
        return super().to_internal_value(data)


class CredentialListView(GenericAPIView[Credential]):
    """JWT only: no `scopes`, so an API key is refused with `permission_denied`."""

    # For the schema only; rows come from the selector.
    queryset = Credential.objects.none()

    @extend_schema(
        responses={200: CredentialOutputSerializer(many=True), **error_responses(401, 403)},
        summary="List your credentials (secrets shown as ***)",
    )
    def get(self, request: Request) -> Response:
        queryset = credential_services.credential_list_for_user(user=_user(request))
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(CredentialOutputSerializer(page, many=True).data)

    @extend_schema(
        request=CredentialInputSerializer,
        responses={201: CredentialOutputSerializer, **error_responses(400, 401, 403, 413)},
        summary="Create a credential",
    )
    def post(self, request: Request) -> Response:
        serializer = CredentialInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = credential_services.credential_create(
            owner=_user(request), **serializer.validated_data
        )
        return Response(CredentialOutputSerializer(credential).data, status=status.HTTP_201_CREATED)


class CredentialDetailView(APIView):
    @extend_schema(
        responses={200: CredentialOutputSerializer, **error_responses(401, 403, 404)},
        summary="Show a credential (secrets shown as ***)",
    )
    def get(self, request: Request, credential_id: str) -> Response:
        credential = credential_services.credential_get_for_user(
            user=_user(request), credential_id=credential_id
        )
        return Response(CredentialOutputSerializer(credential).data)

    @extend_schema(
        request=CredentialInputSerializer,
        responses={200: CredentialOutputSerializer, **error_responses(400, 401, 403, 404, 413)},
        summary="Replace a credential; an omitted secret or *** keeps the stored one",
    )
    def put(self, request: Request, credential_id: str) -> Response:
        credential = credential_services.credential_get_for_user(
            user=_user(request), credential_id=credential_id
        )
        serializer = CredentialInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        credential = credential_services.credential_update(
            credential=credential, **serializer.validated_data
        )
        return Response(CredentialOutputSerializer(credential).data)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)})
    def delete(self, request: Request, credential_id: str) -> Response:
        credential = credential_services.credential_get_for_user(
            user=_user(request), credential_id=credential_id
        )
        credential_services.credential_delete(credential=credential)
        return Response(status=status.HTTP_204_NO_CONTENT)


# --- Workflows ------------------------------------------------------------------------------


class StrictCharField(serializers.CharField):
    """A string that must arrive as a JSON string (DRF would turn 123 into "123")."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A boolean that must arrive as JSON true or false (DRF would accept "yes" or 1)."""

    def to_internal_value(self, data: Any) -> bool:
        if not isinstance(data, bool):
            self.fail("invalid", input=data)
        return data


class GraphField(serializers.JSONField):
    """A graph: a JSON object; its content is checked by the graph validator on save."""

    def to_internal_value(self, data: Any) -> Any:
        value = super().to_internal_value(data)
        if not isinstance(value, dict):
            raise serializers.ValidationError("The graph must be a JSON object.")
        return value


class WorkflowOutputSerializer(BuiltOnceModelSerializer[Workflow]):
    owner = OwnerSerializer()

    class Meta:
        model = Workflow
        fields = (
            "id",
            "name",
            "description",
            "graph",
            "tags",
            "is_public",
            "active",
            "version",
            "owner",
            "created_at",
            "updated_at",
        )


class WorkflowInputSerializer(serializers.Serializer[Any]):
    name = StrictCharField(max_length=200)
    description = StrictCharField(max_length=10_000, allow_blank=True, default="")
    graph = GraphField()
    tags = serializers.ListField(child=StrictCharField(max_length=50), max_length=50, default=list)
    is_public = StrictBooleanField(default=False)
    active = StrictBooleanField(default=False)

    def to_internal_value(self, data: Any) -> Any:
        reject_unknown_fields(data, {*self.fields, "version"}, ignored=READ_ONLY_ECHO)
        value = super().to_internal_value(data)
        if "tags" in value:
            # Duplicates carry no meaning; keep the first spelling's order.
            value["tags"] = list(dict.fromkeys(value["tags"]))
        return value


class WorkflowUpdateInputSerializer(WorkflowInputSerializer):
    version = serializers.IntegerField(min_value=1, required=False)


class VersionInputSerializer(serializers.Serializer[Any]):
    version = serializers.IntegerField(min_value=1, required=False)

    def to_internal_value(self, data: Any) -> Any:
        reject_unknown_fields(data, set(self.fields))
        return super().to_internal_value(data)


class WorkflowFilterSerializer(serializers.Serializer[Any]):
    search = serializers.CharField(max_length=200, required=False, allow_blank=True)
    tag = serializers.ListField(child=serializers.CharField(max_length=50), required=False)
    is_public = serializers.BooleanField(required=False, allow_null=True, default=None)
    active = serializers.BooleanField(required=False, allow_null=True, default=None)
    owner = serializers.CharField(
        required=False, help_text="`me`, or a user id (admins see every owner's)."
    )
    created_after = serializers.DateTimeField(required=False)
    created_before = serializers.DateTimeField(required=False)
    ordering = serializers.ChoiceField(
        choices=[prefix + field for field in selectors.ORDERING_FIELDS for prefix in ("", "-")],
        default=selectors.DEFAULT_ORDERING,
    )

    def validate_owner(self, value: str) -> Any:
        if value == "me":
            return value
        try:
            return serializers.UUIDField().to_internal_value(value)
        except serializers.ValidationError:
            raise serializers.ValidationError("Use `me` or a user id.") from None


def _query(request: Request) -> dict[str, Any]:
    """Query parameters as a plain dict (QueryDict makes DRF read a missing bool as false)."""
    params: dict[str, Any] = {
        key: request.query_params.get(key) for key in request.query_params if key != "tag"
    }
    if "tag" in request.query_params:
        params["tag"] = request.query_params.getlist("tag")
    return params


def _etag(workflow: Workflow) -> dict[str, str]:
    return {"ETag": f'"{workflow.version}"'}


def expected_version(request: Request, body_version: int | None) -> int:
    """The version the client read: body `version` or `If-Match: "<n>"` (they must agree)."""
    header = request.headers.get("If-Match")
    header_version: int | None = None
    if header is not None:
        raw = header.strip().removeprefix("W/").strip().strip('"')
        if not raw.isdigit():
            raise ValidationFailed(
                'If-Match must be the ETag you read, such as "3".',
                details={"If-Match": ['Expected a version such as "3".']},
            )
        header_version = int(raw)
    if body_version is not None and header_version is not None and body_version != header_version:
        raise ValidationFailed(
            "The body version and If-Match disagree.",
            details={"version": ["Does not match If-Match."]},
        )
    version = body_version if body_version is not None else header_version
    if version is None:
        raise VersionRequired()
    return version


IF_MATCH = OpenApiParameter(
    "If-Match",
    str,
    OpenApiParameter.HEADER,
    required=False,
    description='The ETag you read, e.g. "3" (or send `version` in the body).',
)


class WorkflowListView(GenericAPIView[Workflow]):
    scopes = WORKFLOW_SCOPES
    queryset = Workflow.objects.none()

    @extend_schema(
        parameters=[WorkflowFilterSerializer],
        responses={200: WorkflowOutputSerializer(many=True), **error_responses(400, 401, 403)},
        summary="List workflows you may see (yours, public ones; admins: all)",
    )
    def get(self, request: Request) -> Response:
        filters = WorkflowFilterSerializer(data=_query(request))
        filters.is_valid(raise_exception=True)
        params = dict(filters.validated_data)
        owner = params.pop("owner", None)
        queryset = selectors.workflow_list(
            user=_user(request),
            search=params.get("search", ""),
            tags=params.get("tag"),
            is_public=params.get("is_public"),
            active=params.get("active"),
            owner_id=request.user.pk if owner == "me" else owner,
            created_after=params.get("created_after"),
            created_before=params.get("created_before"),
            ordering=params["ordering"],
        )
        page = self.paginate_queryset(queryset)
        return self.get_paginated_response(WorkflowOutputSerializer(page, many=True).data)

    @extend_schema(
        request=WorkflowInputSerializer,
        responses={201: WorkflowOutputSerializer, **error_responses(400, 401, 403, 413)},
        summary="Create a workflow (the graph is validated)",
    )
    def post(self, request: Request) -> Response:
        serializer = WorkflowInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        workflow = services.workflow_create(owner=_user(request), **serializer.validated_data)
        return Response(
            WorkflowOutputSerializer(workflow).data,
            status=status.HTTP_201_CREATED,
            headers=_etag(workflow),
        )


class WorkflowDetailView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        responses={200: WorkflowOutputSerializer, **error_responses(401, 403, 404)},
        summary="Show a workflow (ETag carries its version)",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get_for_user(user=_user(request), workflow_id=workflow_id)
        return Response(WorkflowOutputSerializer(workflow).data, headers=_etag(workflow))

    def _update(self, request: Request, workflow_id: str, *, partial: bool) -> Response:
        workflow = selectors.workflow_get_for_write(user=_user(request), workflow_id=workflow_id)
        serializer = WorkflowUpdateInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        changes = dict(serializer.validated_data)
        version = expected_version(request, changes.pop("version", None))
        workflow = services.workflow_update(
            workflow=workflow, by=_user(request), expected_version=version, changes=changes
        )
        return Response(WorkflowOutputSerializer(workflow).data, headers=_etag(workflow))

    @extend_schema(
        parameters=[IF_MATCH],
        request=WorkflowUpdateInputSerializer,
        responses={200: WorkflowOutputSerializer, **error_responses(400, 401, 403, 404, 409, 413)},
        summary="Replace a workflow (needs the version you read)",
    )
    def put(self, request: Request, workflow_id: str) -> Response:
        return self._update(request, workflow_id, partial=False)

    @extend_schema(
        parameters=[IF_MATCH],
        request=WorkflowUpdateInputSerializer,
        responses={200: WorkflowOutputSerializer, **error_responses(400, 401, 403, 404, 409, 413)},
        summary="Change some fields of a workflow (needs the version you read)",
    )
    def patch(self, request: Request, workflow_id: str) -> Response:
        return self._update(request, workflow_id, partial=True)

    @extend_schema(responses={204: None, **error_responses(401, 403, 404)})
    def delete(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get_for_write(user=_user(request), workflow_id=workflow_id)
        services.workflow_delete(workflow=workflow, by=_user(request))
        return Response(status=status.HTTP_204_NO_CONTENT)


class WorkflowDuplicateView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        request=None,
        responses={201: WorkflowOutputSerializer, **error_responses(400, 401, 403, 404)},
        summary="Copy a workflow you may see into a private one you own",
    )
    def post(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get_for_user(user=_user(request), workflow_id=workflow_id)
        copy = services.workflow_duplicate(workflow=workflow, by=_user(request))
        return Response(
            WorkflowOutputSerializer(copy).data,
            status=status.HTTP_201_CREATED,
            headers=_etag(copy),
        )


class VersionCreatorSerializer(serializers.Serializer[Any]):
    id = serializers.UUIDField()
    name = serializers.CharField()


class WorkflowVersionOutputSerializer(BuiltOnceModelSerializer[WorkflowVersion]):
    created_by = VersionCreatorSerializer(allow_null=True)

    class Meta:
        model = WorkflowVersion
        fields = ("version", "created_at", "created_by")


class WorkflowVersionDetailOutputSerializer(WorkflowVersionOutputSerializer):
    class Meta:
        model = WorkflowVersion
        fields = ("version", "created_at", "created_by", "name", "description", "graph", "tags")


class WorkflowVersionListView(GenericAPIView[WorkflowVersion]):
    scopes = WORKFLOW_SCOPES
    queryset = WorkflowVersion.objects.none()

    @extend_schema(
        responses={
            200: WorkflowVersionOutputSerializer(many=True),
            **error_responses(401, 403, 404),
        },
        summary="List a workflow's saved versions, newest first",
    )
    def get(self, request: Request, workflow_id: str) -> Response:
        workflow = selectors.workflow_get_for_user(user=_user(request), workflow_id=workflow_id)
        page = self.paginate_queryset(selectors.workflow_version_list(workflow=workflow))
        return self.get_paginated_response(WorkflowVersionOutputSerializer(page, many=True).data)


class WorkflowVersionDetailView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        responses={200: WorkflowVersionDetailOutputSerializer, **error_responses(401, 403, 404)},
        summary="Show one saved version of a workflow",
    )
    def get(self, request: Request, workflow_id: str, version_number: int) -> Response:
        workflow = selectors.workflow_get_for_user(user=_user(request), workflow_id=workflow_id)
        version = selectors.workflow_version_get(workflow=workflow, version_number=version_number)
        return Response(WorkflowVersionDetailOutputSerializer(version).data)


class WorkflowVersionRestoreView(APIView):
    scopes = WORKFLOW_SCOPES

    @extend_schema(
        parameters=[IF_MATCH],
        request=VersionInputSerializer,
        responses={200: WorkflowOutputSerializer, **error_responses(400, 401, 403, 404, 409)},
        summary="Make a saved version current again (as a new version)",
    )
    def post(self, request: Request, workflow_id: str, version_number: int) -> Response:
        workflow = selectors.workflow_get_for_write(user=_user(request), workflow_id=workflow_id)
        serializer = VersionInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        version = expected_version(request, serializer.validated_data.get("version"))
        workflow = services.workflow_version_restore(
            workflow=workflow,
            by=_user(request),
            version_number=version_number,
            expected_version=version,
        )
        return Response(WorkflowOutputSerializer(workflow).data, headers=_etag(workflow))
