"""Typed readers for environment variables that fail loudly and name the variable."""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import secrets
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_RATE = re.compile(r"^\d+/\d*[smhd]$")
_SIZE = re.compile(r"^(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?$", re.IGNORECASE)
_SIZE_UNITS = {
    None: 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}


def env_bool(name: str, *, default: bool) -> bool:
    """Read a boolean; anything but a clear yes or no is a configuration error."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be true or false, not {raw!r}.")


def env_int(name: str, *, default: int, minimum: int = 0) -> int:
    """Read a whole number no smaller than `minimum`."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ImproperlyConfigured(f"{name} must be a whole number, not {raw!r}.") from None
    if value < minimum:
        raise ImproperlyConfigured(f"{name} must be at least {minimum}, not {value}.")
    return value


def env_list(name: str, *, default: list[str]) -> list[str]:
    """Read a comma-separated list."""
    raw = os.environ.get(name)
    if raw is None:
        return list(default)
    return [item.strip() for item in raw.split(",") if item.strip()]


def env_rate(name: str, *, default: str) -> str:
    """Read a rate such as `100/15m` (requests per period)."""
    raw = os.environ.get(name, "").strip() or default
    if not _RATE.match(raw):
        raise ImproperlyConfigured(f"{name} must look like 100/15m (count/period), not {raw!r}.")
    return raw


def env_size(name: str, *, default: int) -> int:
    """Read a size in bytes, optionally with a unit (`2MiB`, `500kb`)."""
    raw = os.environ.get(name, "").strip()
    if not raw:
        return default
    match = _SIZE.match(raw)
    if not match:
        raise ImproperlyConfigured(f"{name} must be a size such as 2097152 or 2MiB, not {raw!r}.")
    unit = match.group(2).lower() if match.group(2) else None
    return int(match.group(1)) * _SIZE_UNITS[unit]


def generate_encryption_key() -> str:
    """Return a new random AES-256 key, URL-safe base64."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def load_dev_keys(path: Path) -> dict[str, str]:
    """Return the embedded default's development keys, generating them once into `path`."""
    wanted = ("SECRET_KEY", "JWT_SIGNING_KEY", "AUTOFLOW_ENCRYPTION_KEY")
    keys: dict[str, str] = {}
    if path.exists():
        keys = json.loads(path.read_text())
    if all(keys.get(name) for name in wanted):
        return keys
    keys.setdefault("SECRET_KEY", secrets.token_urlsafe(50))
    keys.setdefault("JWT_SIGNING_KEY", secrets.token_urlsafe(50))
    keys.setdefault("AUTOFLOW_ENCRYPTION_KEY", generate_encryption_key())
    path.write_text(json.dumps(keys, indent=2))
    path.chmod(0o600)
    return keys


def encryption_key_id(key: bytes) -> str:
    """Name a key without revealing it: the first 16 hex digits of its SHA-256."""
    return hashlib.sha256(key).hexdigest()[:16]


def parse_encryption_keys(name: str, current: str, old: str) -> list[tuple[str, bytes]]:
    """Decode the current key and any old ones (comma-separated) into `(key_id, key)` pairs.

    The first pair encrypts; every pair decrypts, so keys can rotate without downtime.
    """
    pairs: list[tuple[str, bytes]] = []
    for index, raw in enumerate([current, *[k for k in old.split(",") if k.strip()]]):
        label = name if index == 0 else "AUTOFLOW_ENCRYPTION_OLD_KEYS"
        try:
            key = base64.urlsafe_b64decode(raw.strip().encode())
        except (binascii.Error, ValueError):
            raise ImproperlyConfigured(f"{label} must be URL-safe base64 of 32 bytes.") from None
        if len(key) != 32:
            raise ImproperlyConfigured(f"{label} must decode to 32 bytes (AES-256).")
        pairs.append((encryption_key_id(key), key))
    return pairs
