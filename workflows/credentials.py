"""Credential services: typed fields, encrypted secrets, and what the engine may read.

Each type declares its fields; secret ones are stored only encrypted (one AES-256-GCM blob per
row, bound to the row id) and are never returned: a response shows `"***"` when one is set.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from rest_framework import serializers

from accounts.models import User
from autoflow.exceptions import NotFound, ValidationFailed
from workflows.crypto import current_key_id, decrypt_json, encrypt_json
from workflows.models import Credential, CredentialType

MASK = "***"


@dataclass(frozen=True)
class CredentialField:
    """One field of a credential type."""

    name: str
    secret: bool = False
    required: bool = True


class _SmtpData(serializers.Serializer[Any]):
    host = serializers.CharField(max_length=255)
    port = serializers.IntegerField(min_value=1, max_value=65535, default=587)
    username = serializers.CharField(max_length=255, allow_blank=True, default="")
    password = serializers.CharField(
        max_length=1024, allow_blank=True, default="", trim_whitespace=False
    )
    security = serializers.ChoiceField(choices=["starttls", "tls", "none"], default="starttls")


class _HttpHeaderData(serializers.Serializer[Any]):
    name = serializers.RegexField(r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$", max_length=255)
    value = serializers.CharField(max_length=8192, trim_whitespace=False)


class _HttpBasicData(serializers.Serializer[Any]):
    username = serializers.CharField(max_length=255)
    password = serializers.CharField(max_length=1024, trim_whitespace=False)


class _HttpBearerData(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=8192, trim_whitespace=False)


# The type's data validator and which of its fields are secret.
CREDENTIAL_TYPES: dict[str, tuple[type[serializers.Serializer[Any]], frozenset[str]]] = {
    CredentialType.SMTP: (_SmtpData, frozenset({"password"})),
    CredentialType.HTTP_HEADER: (_HttpHeaderData, frozenset({"value"})),
    CredentialType.HTTP_BASIC: (_HttpBasicData, frozenset({"password"})),
    CredentialType.HTTP_BEARER: (_HttpBearerData, frozenset({"token"})),
}


def credential_secret_fields(credential_type: str) -> frozenset[str]:
    """Name the secret fields of a credential type."""
    return CREDENTIAL_TYPES[credential_type][1]


def _associated_data(credential_id: uuid.UUID) -> bytes:
    return f"credential:{credential_id}".encode()


def _decrypt_secrets(credential: Credential) -> dict[str, Any]:
    if not credential.secret_ciphertext:
        return {}
    value = decrypt_json(
        credential.secret_ciphertext,
        key_id=credential.key_id,
        associated_data=_associated_data(credential.id),
    )
    return dict(value)


def _store_secrets(credential: Credential, secrets: Mapping[str, Any]) -> None:
    present = {name: value for name, value in secrets.items() if value not in ("", None)}
    if present:
        credential.key_id, credential.secret_ciphertext = encrypt_json(
            present, associated_data=_associated_data(credential.id)
        )
    else:
        credential.key_id, credential.secret_ciphertext = "", ""


def _validated_data(credential_type: str, data: Any) -> dict[str, Any]:
    """Validate `data` for the type; unknown fields are errors so typos never pass silently."""
    if not isinstance(data, dict):
        raise ValidationFailed("data must be an object.", details={"data": ["Must be an object."]})
    validator_class, _secret_fields = CREDENTIAL_TYPES[credential_type]
    validator = validator_class(data=data)
    unknown = sorted(set(data) - set(validator.fields))
    errors: dict[str, Any] = {name: ["Unknown field for this type."] for name in unknown}
    if not validator.is_valid():
        errors.update(
            {name: list(map(str, messages)) for name, messages in validator.errors.items()}
        )
    if errors:
        first = next(iter(errors))
        raise ValidationFailed(
            f"data.{first}: {errors[first][0]}",
            details={"data": errors},
        )
    return dict(validator.validated_data)


def credential_masked_data(credential: Credential) -> dict[str, Any]:
    """The credential's data as a client sees it: secrets as `"***"` when set, else null."""
    secret_fields = credential_secret_fields(credential.type)
    shown: dict[str, Any] = dict(credential.data)
    set_secrets = set()
    if credential.secret_ciphertext:
        # Which secrets are set is not itself secret; the values never leave this module.
        set_secrets = set(_decrypt_secrets(credential))
    for name in sorted(secret_fields):
        shown[name] = MASK if name in set_secrets else None
    return shown


@transaction.atomic
def credential_create(*, owner: User, name: str, type: str, data: Any) -> Credential:
    """Create a credential, encrypting its secret fields."""
    values = _validated_data(type, data)
    secret_fields = credential_secret_fields(type)
    credential = Credential(owner=owner, name=name, type=type)
    credential.data = {k: v for k, v in values.items() if k not in secret_fields}
    _store_secrets(credential, {k: v for k, v in values.items() if k in secret_fields})
    credential.save()
    return credential


@transaction.atomic
def credential_update(*, credential: Credential, name: str, type: str, data: Any) -> Credential:
    """Replace a credential's fields; a secret omitted or sent as `"***"` keeps its value."""
    if not isinstance(data, dict):
        raise ValidationFailed("data must be an object.", details={"data": ["Must be an object."]})
    secret_fields = credential_secret_fields(type)
    # Lock the row so two concurrent updates cannot each keep a different old secret.
    locked = Credential.objects.select_for_update().get(pk=credential.pk)
    kept = _decrypt_secrets(locked) if locked.type == type else {}
    merged = dict(data)
    for field in secret_fields:
        if merged.get(field, MASK) == MASK:
            if field in kept:
                merged[field] = kept[field]
            else:
                merged.pop(field, None)
    values = _validated_data(type, merged)
    locked.name = name
    locked.type = type
    locked.data = {k: v for k, v in values.items() if k not in secret_fields}
    _store_secrets(locked, {k: v for k, v in values.items() if k in secret_fields})
    locked.updated_at = timezone.now()
    locked.save()
    return locked


def credential_delete(*, credential: Credential) -> None:
    """Delete a credential; nodes still naming it fail at run time and on their next save."""
    credential.delete()


def credential_list_for_user(*, user: User) -> QuerySet[Credential]:
    """The caller's credentials (admins: everyone's), newest first."""
    queryset = Credential.objects.select_related("owner").order_by("-created_at")
    return queryset if user.is_staff else queryset.filter(owner=user)


def credential_get_for_user(*, user: User, credential_id: uuid.UUID | str) -> Credential:
    """One credential the caller may manage, else `NotFound`."""
    credential = credential_list_for_user(user=user).filter(pk=credential_id).first()
    if credential is None:
        raise NotFound("Credential not found.")
    return credential


def credential_types_for_owner(*, owner_id: uuid.UUID | str) -> dict[str, str]:
    """Map the owner's credential ids (as str) to their type, for graph validation."""
    rows = Credential.objects.filter(owner_id=uuid.UUID(str(owner_id))).values_list("id", "type")
    return {str(credential_id): credential_type for credential_id, credential_type in rows}


def credential_data_for_run(
    *, owner_id: uuid.UUID | str, credential_id: uuid.UUID | str
) -> dict[str, Any] | None:
    """The full decrypted data of the owner's credential, or None when there is no such one."""
    try:
        parsed_id = uuid.UUID(str(credential_id))
        parsed_owner_id = uuid.UUID(str(owner_id))
    except ValueError:
        return None
    credential = Credential.objects.filter(pk=parsed_id, owner_id=parsed_owner_id).first()
    if credential is None:
        return None
    return {**credential.data, **_decrypt_secrets(credential)}


def credential_secret_values(data: Mapping[str, Any]) -> list[str]:
    """The secret values inside run-time credential data, for redacting logs and outputs."""
    secret_names = {name for _, secrets in CREDENTIAL_TYPES.values() for name in secrets}
    return [
        str(value)
        for name, value in data.items()
        if name in secret_names and isinstance(value, str | int) and str(value)
    ]


def credential_reencrypt_all(*, batch_size: int = 200) -> int:
    """Re-encrypt every credential not yet under the current key; return how many changed."""
    key_id = current_key_id()
    changed = 0
    pending = Credential.objects.exclude(secret_ciphertext="").exclude(key_id=key_id)
    # Bounded: each pass converts a batch, so the pending set shrinks every time.
    for _ in range(1 + pending.count() // batch_size + 1):
        ids = list(pending.values_list("id", flat=True)[:batch_size])
        if not ids:
            break
        for credential_id in ids:
            with transaction.atomic():
                credential = Credential.objects.select_for_update().filter(pk=credential_id).first()
                if credential is None or credential.key_id == key_id:
                    continue
                _store_secrets(credential, _decrypt_secrets(credential))
                credential.save(update_fields=["secret_ciphertext", "key_id"])
                changed += 1
    return changed
