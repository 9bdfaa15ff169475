"""Workflow and credential endpoints (thin: validate input, call a service, serialize)."""

from __future__ import annotations

from typing import Any, cast

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.models import User
from autoflow.exceptions import ValidationFailed
from autoflow.schema import error_responses
from workflows import credentials as credential_services
from workflows.models import Credential, CredentialType


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


class CredentialOutputSerializer(serializers.ModelSerializer[Credential]):
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
