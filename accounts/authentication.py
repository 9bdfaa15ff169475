"""DRF authentication: access JWTs (`Bearer`) and API keys (`Api-Key` / `X-API-Key`)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from typing import Any

from django.utils import timezone
from rest_framework.authentication import BaseAuthentication
from rest_framework.request import Request
from rest_framework_simplejwt.authentication import JWTAuthentication
from rest_framework_simplejwt.exceptions import AuthenticationFailed, InvalidToken, TokenError
from rest_framework_simplejwt.settings import api_settings as jwt_settings
from rest_framework_simplejwt.tokens import Token
from rest_framework_simplejwt.utils import get_md5_hash_password

from accounts.models import ApiKey, User
from accounts.tokens import access_token_decode, access_token_verify, token_user_id
from autoflow.exceptions import TokenInvalid
from autoflow.statements import get_one

API_KEY_PREFIX = "af_"
_LAST_USED_RESOLUTION = timedelta(minutes=1)


def api_key_hash(raw_key: str) -> str:
    """Hash a key for storage; keys are long and random, so one SHA-256 round suffices."""
    return hashlib.sha256(raw_key.encode()).hexdigest()


def api_key_generate() -> tuple[str, str]:
    """Return a new `(prefix, full key)`: `af_<prefix>_<secret>`."""
    prefix = secrets.token_hex(6)
    return prefix, f"{API_KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"


def api_key_authenticate(raw_key: str) -> ApiKey:
    """Return the usable key a raw key names (its owner active), else raise `TokenInvalid`."""
    parts = raw_key.strip().split("_")
    if len(parts) < 3 or f"{parts[0]}_" != API_KEY_PREFIX:
        raise TokenInvalid("The API key is malformed.")
    api_key = ApiKey.objects.select_related("user").filter(prefix=parts[1]).first()
    if api_key is None or not hmac.compare_digest(api_key.key_hash, api_key_hash(raw_key.strip())):
        raise TokenInvalid("The API key is not valid.")
    if not api_key.is_usable:
        raise TokenInvalid("The API key is revoked or expired.")
    if not api_key.user.is_active:
        raise TokenInvalid("The API key's user is inactive.")
    now = timezone.now()
    if api_key.last_used_at is None or now - api_key.last_used_at > _LAST_USED_RESOLUTION:
        # Recorded at minute resolution so a busy key does not write on every request.
        ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)
        api_key.last_used_at = now
    return api_key


def user_from_access_token(raw_token: str) -> tuple[User, Any]:
    """Return the active user an access JWT names and the decoded token."""
    token = access_token_decode(raw_token)
    user_id = token_user_id(token)
    user = get_one(User, "pk", user_id) if user_id else None
    if user is None or not user.is_active:
        raise TokenInvalid("The token's user is inactive or gone.")
    return user, token


class JwtAuthentication(JWTAuthentication):
    """simplejwt's access-token authentication, with every failure as `token_invalid`."""

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        try:
            return super().authenticate(request)
        except (InvalidToken, AuthenticationFailed) as error:
            raise TokenInvalid(
                "The access token is invalid, expired or of the wrong type."
            ) from error

    def get_validated_token(self, raw_token: bytes) -> Token:
        """simplejwt's validation of the access token, its signature checked once per process
        (`accounts.tokens.access_token_verify`)."""
        try:
            return access_token_verify(raw_token)
        except TokenError as error:
            raise InvalidToken(str(error)) from error

    def get_user(self, validated_token: Token) -> User:  # type: ignore[override]  # simplejwt: a TypeVar
        """simplejwt's checks, on a user read by a precompiled statement.

        Every API request reads its user; through the ORM, compiling that one query cost
        about 9 % of the web process's CPU under load.
        """
        user_id = validated_token.get(jwt_settings.USER_ID_CLAIM)
        user = get_one(User, jwt_settings.USER_ID_FIELD, user_id) if user_id is not None else None
        if user is None:
            raise AuthenticationFailed("User not found", code="user_not_found")
        if jwt_settings.CHECK_USER_IS_ACTIVE and not user.is_active:
            raise AuthenticationFailed("User is inactive", code="user_inactive")
        if jwt_settings.CHECK_REVOKE_TOKEN and validated_token.get(
            jwt_settings.REVOKE_TOKEN_CLAIM
        ) != get_md5_hash_password(user.password):
            raise AuthenticationFailed(
                "The user's password has been changed.", code="password_changed"
            )
        return user


class ApiKeyAuthentication(BaseAuthentication):
    """`Authorization: Api-Key <key>` or `X-API-Key: <key>`; `request.auth` is the `ApiKey`."""

    def authenticate(self, request: Request) -> tuple[User, ApiKey] | None:
        raw = request.headers.get("X-API-Key", "")
        header = request.headers.get("Authorization", "")
        if not raw and header[:8].lower() == "api-key ":
            raw = header[8:]
        if not raw:
            return None
        api_key = api_key_authenticate(raw)
        return api_key.user, api_key

    def authenticate_header(self, request: Request) -> str:
        return "Api-Key"
