"""AES-256-GCM encryption of credential secrets under rotating keys.

`settings.AUTOFLOW_ENCRYPTION_KEYS` is a list of `(key_id, key)` pairs: the first encrypts,
every one decrypts, so a new key can be deployed first and old ciphertexts re-encrypted
afterwards (`manage.py rotate_encryption_key`) without downtime.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

_NONCE_BYTES = 12


class DecryptionError(Exception):
    """A ciphertext that no configured key opens (wrong key, unknown key id, tampering)."""


def _keys() -> list[tuple[str, bytes]]:
    return list(settings.AUTOFLOW_ENCRYPTION_KEYS)


def current_key_id() -> str:
    """Name the key new ciphertexts are written under."""
    return _keys()[0][0]


def encrypt_json(value: Any, *, associated_data: bytes) -> tuple[str, str]:
    """Encrypt a JSON value under the current key; return `(key_id, base64(nonce || ct))`.

    `associated_data` binds the ciphertext to its row, so it cannot be copied onto another.
    """
    key_id, key = _keys()[0]
    nonce = os.urandom(_NONCE_BYTES)
    plaintext = json.dumps(value, separators=(",", ":")).encode()
    ciphertext = AESGCM(key).encrypt(nonce, plaintext, associated_data)
    return key_id, base64.b64encode(nonce + ciphertext).decode()


def decrypt_json(token: str, *, key_id: str, associated_data: bytes) -> Any:
    """Decrypt what `encrypt_json` returned, with whichever configured key has `key_id`."""
    key = dict(_keys()).get(key_id)
    if key is None:
        raise DecryptionError(f"No configured encryption key has id {key_id!r}.")
    try:
        raw = base64.b64decode(token.encode(), validate=True)
        plaintext = AESGCM(key).decrypt(raw[:_NONCE_BYTES], raw[_NONCE_BYTES:], associated_data)
    except (InvalidTag, binascii.Error, ValueError) as error:
        raise DecryptionError("The ciphertext could not be decrypted.") from error
    return json.loads(plaintext)
