"""Auth, account and API-key endpoints (thin: validate, call a service, serialize)."""

from __future__ import annotations

from typing import Any, cast

from django.conf import settings
from drf_spectacular.utils import extend_schema, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.generics import GenericAPIView
from rest_framework.permissions import AllowAny
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import services
from accounts.models import ApiKey, ApiScope, User
from accounts.selectors import api_key_get_for_user, api_key_list
from accounts.tokens import refresh_token_decode, refresh_token_revoke, tokens_refresh
from autoflow.exceptions import TokenInvalid
from autoflow.ratelimit import check_rate, client_ip
from autoflow.schema import error_responses
from autoflow.serializers import BuiltOnceModelSerializer


class UserOutputSerializer(BuiltOnceModelSerializer[User]):
    role = serializers.CharField(read_only=True)

    class Meta:
        model = User
        fields = ("id", "email", "name", "role")


class TokensOutputSerializer(serializers.Serializer[Any]):
    user = UserOutputSerializer()
    access = serializers.CharField()
    refresh = serializers.CharField()


class RefreshOutputSerializer(serializers.Serializer[Any]):
    access = serializers.CharField()
    refresh = serializers.CharField()


def _auth_rate_check(request: Request, email: str) -> None:
    """RATE_LIMIT_AUTH, counted on its own for the client IP and for the submitted email."""
    rate = settings.RATE_LIMIT_AUTH
    check_rate(request, group="auth", key=f"ip:{client_ip(request)}", rate=rate)
    if email:
        check_rate(request, group="auth", key=f"email:{email.strip().lower()}", rate=rate)


def _submitted_email(request: Request) -> str:
    """The email a body names, for the per-email limit (parsing errors surface as 400)."""
    data = request.data
    email = data.get("email", "") if isinstance(data, dict) else ""
    return email if isinstance(email, str) else ""


def _tokens_body(user: User, tokens: dict[str, str]) -> dict[str, Any]:
    return {"user": UserOutputSerializer(user).data, **tokens}


class PublicAuthView(APIView):
    """Auth endpoints that take no credentials and have a rate limit of their own."""

    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    rate_limit_group = "auth"


class RegisterView(PublicAuthView):
    @extend_schema_serializer(component_name="RegisterInput")
    class InputSerializer(serializers.Serializer[Any]):
        email = serializers.EmailField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)
        name = serializers.CharField(max_length=150, allow_blank=True, default="")

    @extend_schema(
        request=InputSerializer,
        responses={201: TokensOutputSerializer, **error_responses(400, 413, 429)},
        summary="Create an account and sign in",
    )
    def post(self, request: Request) -> Response:
        _auth_rate_check(request, _submitted_email(request))
        data = self._validated(request)
        user, tokens = services.user_register(**data)
        return Response(_tokens_body(user, tokens), status=status.HTTP_201_CREATED)

    def _validated(self, request: Request) -> dict[str, Any]:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


class LoginView(PublicAuthView):
    @extend_schema_serializer(component_name="LoginInput")
    class InputSerializer(serializers.Serializer[Any]):
        email = serializers.CharField(max_length=254)
        password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema(
        request=InputSerializer,
        responses={200: TokensOutputSerializer, **error_responses(400, 401, 429)},
        summary="Sign in with email and password",
    )
    def post(self, request: Request) -> Response:
        _auth_rate_check(request, _submitted_email(request))
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user, tokens = services.user_login(request=request._request, **serializer.validated_data)
        return Response(_tokens_body(user, tokens))


class RefreshTokenInputSerializer(serializers.Serializer[Any]):
    refresh = serializers.CharField()


class RefreshView(PublicAuthView):
    rate_limit_group = "refresh"

    @extend_schema(
        request=RefreshTokenInputSerializer,
        responses={200: RefreshOutputSerializer, **error_responses(400, 401, 429)},
        summary="Rotate a refresh token",
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        raw = serializer.validated_data["refresh"]
        try:
            key = f"user:{refresh_token_decode(raw).get('user_id')}"
        except TokenInvalid:
            key = f"ip:{client_ip(request)}"
        check_rate(request, group="refresh", key=key, rate=settings.RATE_LIMIT_REFRESH)
        return Response(tokens_refresh(raw_refresh=raw))


class LogoutView(PublicAuthView):
    rate_limit_group = "refresh"

    @extend_schema(
        request=RefreshTokenInputSerializer,
        responses={204: None, **error_responses(400, 401)},
        summary="Revoke a refresh token",
    )
    def post(self, request: Request) -> Response:
        serializer = RefreshTokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        ip_key = f"ip:{client_ip(request)}"
        check_rate(request, group="refresh", key=ip_key, rate=settings.RATE_LIMIT_REFRESH)
        refresh_token_revoke(raw_refresh=serializer.validated_data["refresh"])
        return Response(status=status.HTTP_204_NO_CONTENT)


class MeView(APIView):
    @extend_schema_serializer(component_name="MeUpdateInput")
    class InputSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=150, allow_blank=True, required=False)

    @extend_schema(responses={200: UserOutputSerializer, **error_responses(401, 403)})
    def get(self, request: Request) -> Response:
        return Response(UserOutputSerializer(cast(User, request.user)).data)

    @extend_schema(
        request=InputSerializer,
        responses={200: UserOutputSerializer, **error_responses(400, 401, 403)},
    )
    def patch(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        user = cast(User, request.user)
        # A PATCH may leave every field out; then nothing changes.
        if "name" in serializer.validated_data:
            user = services.user_update(user=user, name=serializer.validated_data["name"])
        return Response(UserOutputSerializer(user).data)


class PasswordView(APIView):
    rate_limit_group = "auth"

    @extend_schema_serializer(component_name="PasswordChangeInput")
    class InputSerializer(serializers.Serializer[Any]):
        current_password = serializers.CharField(max_length=128, trim_whitespace=False)
        new_password = serializers.CharField(max_length=128, trim_whitespace=False)

    @extend_schema(
        request=InputSerializer,
        responses={204: None, **error_responses(400, 401, 403, 429)},
        summary="Change the password; revokes every refresh token",
    )
    def post(self, request: Request) -> Response:
        check_rate(
            request, group="auth", key=f"user:{request.user.pk}", rate=settings.RATE_LIMIT_AUTH
        )
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.user_password_change(user=cast(User, request.user), **serializer.validated_data)
        return Response(status=status.HTTP_204_NO_CONTENT)


class ApiKeyOutputSerializer(BuiltOnceModelSerializer[ApiKey]):
    class Meta:
        model = ApiKey
        fields = ("id", "name", "prefix", "scopes", "expires_at", "last_used_at", "created_at")


class ApiKeyCreatedSerializer(BuiltOnceModelSerializer[ApiKey]):
    key = serializers.SerializerMethodField()

    class Meta:
        model = ApiKey
        fields = ("id", "name", "key", "prefix", "scopes", "expires_at", "created_at")

    def get_key(self, obj: ApiKey) -> str:
        return str(self.context["raw_key"])


class ApiKeyListView(GenericAPIView[ApiKey]):
    @extend_schema_serializer(component_name="ApiKeyCreateInput")
    class InputSerializer(serializers.Serializer[Any]):
        name = serializers.CharField(max_length=100)
        scopes = serializers.ListField(
            child=serializers.ChoiceField(choices=ApiScope.choices), allow_empty=False
        )
        expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)

    @extend_schema(responses={200: ApiKeyOutputSerializer(many=True), **error_responses(401, 403)})
    def get(self, request: Request) -> Response:
        page = self.paginate_queryset(api_key_list(user=cast(User, request.user)))
        return self.get_paginated_response(ApiKeyOutputSerializer(page, many=True).data)

    @extend_schema(
        request=InputSerializer,
        responses={201: ApiKeyCreatedSerializer, **error_responses(400, 401, 403)},
        summary="Create an API key (the key is shown once)",
    )
    def post(self, request: Request) -> Response:
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        api_key, raw_key = services.api_key_create(
            user=cast(User, request.user), **serializer.validated_data
        )
        body = ApiKeyCreatedSerializer(api_key, context={"raw_key": raw_key}).data
        return Response(body, status=status.HTTP_201_CREATED)


class ApiKeyDetailView(APIView):
    @extend_schema(responses={204: None, **error_responses(401, 403, 404)})
    def delete(self, request: Request, api_key_id: str) -> Response:
        api_key = api_key_get_for_user(user=cast(User, request.user), api_key_id=api_key_id)
        services.api_key_revoke(api_key=api_key)
        return Response(status=status.HTTP_204_NO_CONTENT)
