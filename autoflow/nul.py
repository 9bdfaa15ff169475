"""NUL characters: PostgreSQL stores none, neither in text nor in jsonb (as `\\u0000`).

A string holding one made the statement that stores it fail: an API body or a webhook call
answered 500, and a run whose node returned one could not write its end. So they are refused
where they come in (request bodies, an execution's input, a node's output) with a clear error,
and scrubbed from diagnostic text (error messages, log lines) on the way to the database.
SQLite would store them; refusing them on every backend keeps a workflow's behaviour the same.
"""

from __future__ import annotations

import re
from typing import Any

NUL = "\x00"
# U+FFFD REPLACEMENT CHARACTER: what a NUL in diagnostic text is stored as.
REPLACEMENT = "\ufffd"
# `\u0000` after an even number of backslashes (none included): a NUL in JSON text, not the
# six characters `\u0000` written as text (`\\u0000`).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_ESCAPED_NUL_BYTES = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def contains_nul(value: Any) -> bool:
    """Whether a string inside plain JSON data (keys included) holds a NUL."""
    if isinstance(value, str):
        return NUL in value
    if isinstance(value, dict):
        return any(contains_nul(key) or contains_nul(item) for key, item in value.items())
    if isinstance(value, list | tuple):
        return any(contains_nul(item) for item in value)
    return False


def without_nul(value: Any) -> Any:
    """Plain JSON data with every NUL in its strings (keys included) replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {without_nul(key): without_nul(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [without_nul(item) for item in value]
    return value


def json_has_nul(encoded: str | bytes) -> bool:
    """Whether JSON text (ASCII-compatible, as `json.dumps` writes it) holds a NUL in a string.

    The substring test is all most texts cost; the pattern only looks at one that has it.
    """
    if isinstance(encoded, bytes):
        return b"\\u0000" in encoded and _ESCAPED_NUL_BYTES.search(encoded) is not None
    return "\\u0000" in encoded and _ESCAPED_NUL.search(encoded) is not None
