"""What PostgreSQL cannot store in `jsonb` or text: NULs, lone surrogates, non-finite numbers.

A string holding a NUL (`\\u0000`) or a lone surrogate (`\\ud800`: half of a UTF-16 pair,
which JSON's escapes can spell and Python's `json` reads, but which is no character), or a
number that is NaN or infinite (which Python's `json` reads and writes, though JSON has none),
made the statement that stores it fail: a webhook call or an API body answered 500, and a run
whose node returned one could not write its end. So they are refused where they come in
(request bodies, an execution's input, a node's output) with a clear error, and scrubbed from
diagnostic text (error messages, log lines) on the way to the database. SQLite would store
some of them; refusing them on every backend keeps a workflow's behaviour the same.
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
_SURROGATE_ESCAPE_BYTES = re.compile(rb"\\u[dD][89a-fA-F]")


def is_text(value: str) -> bool:
    """Whether the string encodes as UTF-8 (holds no lone surrogate)."""
    if value.isascii():
        return True
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def unstorable(value: Any) -> str | None:
    """What in plain JSON data (keys included) cannot be stored, in words; None when all can."""
    if isinstance(value, str):
        if NUL in value:
            return "a NUL character (\\u0000)"
        return None if is_text(value) else "a lone surrogate (half of a UTF-16 pair)"
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


def scrubbed(value: Any) -> Any:
    """Plain JSON data with every NUL and lone surrogate in its strings (keys included)
    replaced by U+FFFD."""
    if isinstance(value, str):
        if not is_text(value):
            value = value.encode(errors="surrogatepass").decode(errors="replace")
        return value.replace(NUL, REPLACEMENT)
    if isinstance(value, dict):
        return {scrubbed(key): scrubbed(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [scrubbed(item) for item in value]
    return value


def json_has_nul(encoded: str) -> bool:
    """Whether JSON text (as `json.dumps` writes it) holds a NUL in a string.

    The substring test is all most texts cost; the pattern only looks at one that has it.
    """
    return "\\u0000" in encoded and _ESCAPED_NUL.search(encoded) is not None


def json_storable(encoded: str) -> bool:
    """Whether JSON text (as `json.dumps(..., ensure_ascii=False)` writes it) can be stored."""
    return not json_has_nul(encoded) and is_text(encoded)


def may_hold_unstorable(body: bytes) -> bool:
    """Whether a JSON body (bytes) may spell a NUL or a surrogate: only those need a walk.

    A NUL comes as the escape `\\u0000` or, in UTF-16 or UTF-32, as NUL bytes; a surrogate
    only as an escape (`\\ud800`).
    """
    return b"\\u0000" in body or b"\x00" in body or _SURROGATE_ESCAPE_BYTES.search(body) is not None
