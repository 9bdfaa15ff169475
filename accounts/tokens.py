"""JWT issue, rotation and revocation on top of simplejwt's outstanding/blacklist tables.

simplejwt has no notion of a token family, so each refresh token carries a `family` claim:
reusing a rotated token revokes its whole family (the thief's copy and the victim's).
"""

from __future__ import annotations

import uuid
from typing import Any

import structlog
from django.db import IntegrityError, transaction
from rest_framework_simplejwt.exceptions import TokenError
from rest_framework_simplejwt.token_blacklist.models import BlacklistedToken, OutstandingToken
from rest_framework_simplejwt.tokens import AccessToken, RefreshToken, Token
from rest_framework_simplejwt.utils import aware_utcnow

from accounts.models import RevokedTokenFamily, User
from autoflow.bounded import BoundedCache
from autoflow.exceptions import TokenInvalid

logger = structlog.get_logger(__name__)
FAMILY_CLAIM = "family"


def tokens_issue(*, user: User, family: str | None = None) -> dict[str, str]:
    """Issue an access + refresh pair; the refresh token is recorded as outstanding."""
    refresh = RefreshToken.for_user(user)
    refresh[FAMILY_CLAIM] = family or uuid.uuid4().hex
    OutstandingToken.objects.filter(jti=refresh["jti"]).update(token=str(refresh))
    return {"access": str(refresh.access_token), "refresh": str(refresh)}


class _UncheckedBlacklistRefreshToken(RefreshToken):
    """A refresh token whose blacklist check is left to `tokens_refresh`.

    simplejwt's own check refuses a used token before the caller can tell reuse apart, so
    the family would never be revoked.
    """

    def verify(self, *args: Any, **kwargs: Any) -> None:
        Token.verify(self)


def refresh_token_decode(raw: str) -> RefreshToken:
    """Verify a refresh token's signature, expiry and type, without touching the database."""
    try:
        return _UncheckedBlacklistRefreshToken(raw, verify=True)  # type: ignore[arg-type]
    except TokenError:
        raise TokenInvalid("The refresh token is invalid or expired.") from None


# Access tokens whose signature this process has checked, at most (a client reuses its token
# for every request until it expires, minutes later).
VERIFIED_ACCESS_TOKENS_MAX = 4096
_verified_access_tokens: BoundedCache[str, AccessToken] = BoundedCache(VERIFIED_ACCESS_TOKENS_MAX)


def access_token_verify(raw: str | bytes) -> AccessToken:
    """simplejwt's checks of an access token (signature, type, expiry); raises `TokenError`.

    A token's signature, type and claims never change, so they are checked once per process
    (decoding and verifying cost ~30 µs of every API request, PyJWT's check of each character
    of the base64 text among it); its expiry is checked again on every use. Nothing else can
    revoke an access token: simplejwt keeps no blacklist of them, and the user's checks
    (exists, active) run per request in `JwtAuthentication.get_user`.
    """
    # DRF hands over bytes, the WebSocket handshake text: one key for both (latin-1 maps every
    # byte to one character, so no two raw tokens share a key).
    key = raw.decode("latin-1") if isinstance(raw, bytes) else raw
    token = _verified_access_tokens.get(key)
    if token is not None:
        token.check_exp(current_time=aware_utcnow())
        return token
    token = AccessToken(raw, verify=True)  # type: ignore[arg-type]  # simplejwt accepts both
    _verified_access_tokens.put(key, token)
    return token


def access_token_decode(raw: str) -> AccessToken:
    """Verify an access token's signature, expiry and type (`access_token_verify`)."""
    try:
        return access_token_verify(raw)
    except TokenError:
        raise TokenInvalid("The access token is invalid or expired.") from None


def _blacklist(outstanding: OutstandingToken) -> bool:
    """Blacklist one token; False when it already was (the unique row serialises racers)."""
    try:
        with transaction.atomic():
            BlacklistedToken.objects.create(token=outstanding)
    except IntegrityError:
        return False
    return True


def tokens_refresh(*, raw_refresh: str) -> dict[str, str]:
    """Rotate a refresh token: exactly one caller can use it, and reuse revokes its family."""
    token = refresh_token_decode(raw_refresh)
    family = str(token.get(FAMILY_CLAIM, ""))
    outstanding = OutstandingToken.objects.select_related("user").filter(jti=token["jti"]).first()
    if outstanding is None or not family:
        raise TokenInvalid("The refresh token is not known.")
    if RevokedTokenFamily.objects.filter(family=family).exists():
        raise TokenInvalid("The refresh token was revoked.")
    if not _blacklist(outstanding):
        RevokedTokenFamily.objects.get_or_create(family=family)
        logger.warning("refresh token reused; family revoked", user_id=str(outstanding.user_id))
        raise TokenInvalid("The refresh token was already used.")
    user = outstanding.user
    if user is None or not user.is_active:
        raise TokenInvalid("The user is inactive or gone.")
    return tokens_issue(user=user, family=family)


def refresh_token_revoke(*, raw_refresh: str) -> None:
    """Revoke one refresh token (logout); revoking it twice is not an error."""
    token = refresh_token_decode(raw_refresh)
    outstanding = OutstandingToken.objects.filter(jti=token["jti"]).first()
    if outstanding is None:
        raise TokenInvalid("The refresh token is not known.")
    _blacklist(outstanding)


def user_refresh_tokens_revoke(*, user: User) -> int:
    """Revoke every refresh token a user holds (password change, deactivation)."""
    pending = OutstandingToken.objects.filter(user=user, blacklistedtoken__isnull=True)
    revoked = 0
    for outstanding in pending.iterator():
        revoked += _blacklist(outstanding)
    return revoked


def token_user_id(token: Any) -> str | None:
    """The user id a decoded token names."""
    value = token.get("user_id")
    return str(value) if value else None
