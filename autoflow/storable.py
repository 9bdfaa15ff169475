"""What PostgreSQL cannot store in `jsonb` or text: NUL characters and non-finite numbers.

A string holding a NUL (`\\u0000`), or a number that is NaN or infinite (which Python's `json`
reads and writes, though JSON has none), made the statement that stores it fail: a webhook call
or an API body answered 500, and a run whose node returned one could not write its end. So
they are refused where they come in (request bodies, an execution's input, a node's output)
with a clear error, and NULs are scrubbed from diagnostic text (error messages, log lines) on
the way to the database. SQLite would store a NUL; refusing it on every backend keeps a
workflow's behaviour the same.
"""

from __future__ import annotations

import math
import re
from typing import Any, NoReturn

NUL = "\x00"
# U+FFFD REPLACEMENT CHARACTER: what a NUL in diagnostic text is stored as.
REPLACEMENT = "\ufffd"
# `\u0000` after an even number of backslashes (none included): a NUL in JSON text, not the
# six characters `\u0000` written as text (`\\u0000`).
_ESCAPED_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
_ESCAPED_NUL_BYTES = re.compile(rb"(?<!\\)(?:\\\\)*\\u0000")


def unstorable(value: Any) -> str | None:
    """What in plain JSON data (keys included) cannot be stored, in words; None when all can."""
    if isinstance(value, str):
        return "a NUL character (\\u0000)" if NUL in value else None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"the number {value!r}, which JSON has not"
    if isinstance(value, dict):
        for key, item in value.items():
            found = unstorable(key) or unstorable(item)
            if found:
                return found
        return None
    if isinstance(value, list | tuple):
        for item in value:
            found = unstorable(item)
            if found:
                return found
    return None


def refuse_constant(name: str) -> NoReturn:
    """`json.loads(..., parse_constant=refuse_constant)`: NaN and Infinity are not JSON."""
    raise ValueError(f"{name} is not a JSON number")


def finite_float(text: str) -> float:
    """`json.loads(..., parse_float=finite_float)`: a number too large for a float (`1e400`),
    which Python would read as infinity, is refused."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


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
