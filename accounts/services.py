"""Account actions: register, log in, change password, manage API keys."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth import authenticate
from django.contrib.auth.password_validation import validate_password
from django.core.exceptions import ValidationError as DjangoValidationError
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from accounts.authentication import api_key_generate, api_key_hash
from accounts.models import ApiKey, User
from accounts.tokens import tokens_issue, user_refresh_tokens_revoke
from autoflow.exceptions import InvalidCredentials, ValidationFailed


def _password_errors(password: str, user: User | None = None) -> list[str]:
    try:
        validate_password(password, user=user)
    except DjangoValidationError as error:
        return list(error.messages)
    return []


def user_register(*, email: str, password: str, name: str) -> tuple[User, dict[str, str]]:
    """Create a user and sign them in."""
    email = email.strip().lower()
    candidate = User(email=email, name=name)
    errors = _password_errors(password, candidate)
    if errors:
        raise ValidationFailed(errors[0], details={"password": errors})
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationFailed(
            "A user with this email already exists.",
            details={"email": ["A user with this email already exists."]},
        )
    try:
        with transaction.atomic():
            user = User.objects.create_user(email=email, password=password, name=name)
    except IntegrityError:
        raise ValidationFailed(
            "A user with this email already exists.",
            details={"email": ["A user with this email already exists."]},
        ) from None
    return user, tokens_issue(user=user)


def user_login(
    *, request: HttpRequest | None, email: str, password: str
) -> tuple[User, dict[str, str]]:
    """Check credentials; an unknown email and a wrong password answer the same."""
    user = authenticate(request, email=email.strip().lower(), password=password)
    if not isinstance(user, User):
        raise InvalidCredentials()
    return user, tokens_issue(user=user)


def user_update(*, user: User, name: str) -> User:
    """Change what a user may change about themselves."""
    user.name = name
    user.save(update_fields=["name"])
    return user


def user_password_change(*, user: User, current_password: str, new_password: str) -> None:
    """Change a password and revoke every refresh token the user holds."""
    if not user.check_password(current_password):
        raise ValidationFailed(
            "The current password is not correct.",
            details={"current_password": ["The current password is not correct."]},
        )
    errors = _password_errors(new_password, user)
    if errors:
        raise ValidationFailed(errors[0], details={"new_password": errors})
    user.set_password(new_password)
    user.save(update_fields=["password"])
    user_refresh_tokens_revoke(user=user)


def user_deactivate(*, user: User) -> None:
    """Stop every token and key of a user at once."""
    user.is_active = False
    user.save(update_fields=["is_active"])
    user_refresh_tokens_revoke(user=user)


def api_key_create(
    *, user: User, name: str, scopes: list[str], expires_at: datetime | None
) -> tuple[ApiKey, str]:
    """Create a key; the full key is returned here once and never stored."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationFailed(
            "The expiry must be in the future.",
            details={"expires_at": ["The expiry must be in the future."]},
        )
    prefix, raw_key = api_key_generate()
    api_key = ApiKey.objects.create(
        user=user,
        name=name,
        prefix=prefix,
        key_hash=api_key_hash(raw_key),
        scopes=sorted(set(scopes)),
        expires_at=expires_at,
    )
    return api_key, raw_key


def api_key_revoke(*, api_key: ApiKey) -> None:
    """Revoke a key: it stops working at once (the row stays for the audit trail)."""
    if api_key.revoked_at is None:
        api_key.revoked_at = timezone.now()
        api_key.save(update_fields=["revoked_at"])
