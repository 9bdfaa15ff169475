"""Sandboxed template expressions in node params: `{{ input.x }}`, `{{ nodes.<id>.<field> }}`.

Jinja2's `ImmutableSandboxedEnvironment` keeps templates away from Python internals and from
mutating the data they read. Two traps are closed here on top of it: operators are only seen by
the sandbox when listed in `intercepted_binops` (listing them also stops the compiler from
folding constants, which would otherwise allocate at compile time), and a few filters and string
methods can build huge strings from a small template, so they are bounded or refused.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator, Mapping, Sequence
from functools import lru_cache
from types import MappingProxyType
from typing import Any

from jinja2 import ChainableUndefined, StrictUndefined, TemplateSyntaxError, UndefinedError
from jinja2.environment import Template, TemplateExpression
from jinja2.exceptions import SecurityError
from jinja2.filters import do_batch, do_center, do_indent, do_slice
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from nodes.base import NodeError

# Largest string, list or rendered output one expression may build (characters or items).
MAX_SIZE = 1024 * 1024
# Largest integer an expression may compute, in bits (about 300 decimal digits).
MAX_INT_BITS = 1024
# Largest field width a format spec may ask for.
MAX_FORMAT_WIDTH = 10_000
# How many compiled templates stay cached.
CACHE_SIZE = 2048

_WHOLE_EXPRESSION = re.compile(r"\A\s*\{\{(?P<body>.*)\}\}\s*\Z", re.DOTALL)
_PERCENT_SPEC = re.compile(r"%(?:\([^)]*\))?[-#0 +]*(\*|\d+)?(?:\.(\*|\d+))?")


class _Undefined(ChainableUndefined, StrictUndefined):
    """Missing names chain (`nodes.skipped.x | default(0)` works) but fail when used."""

    __slots__ = ()


def _size(value: Any) -> int:
    if isinstance(value, (str, bytes, list, tuple)):
        return len(value)
    return 0


def _check_int(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > MAX_INT_BITS:
        raise SecurityError(f"number too large (over {MAX_INT_BITS} bits)")
    return value


def _check_size(value: Any) -> Any:
    if _size(value) > MAX_SIZE:
        raise SecurityError(f"result too large (over {MAX_SIZE} characters or items)")
    return value


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > MAX_FORMAT_WIDTH:
        raise SecurityError(f"width {width} is larger than {MAX_FORMAT_WIDTH}")


def _check_percent_format(template: str) -> None:
    for match in _PERCENT_SPEC.finditer(template):
        for part in match.groups():
            if part == "*":
                raise SecurityError("'*' widths in % formatting are not allowed")
            if part is not None and int(part) > MAX_FORMAT_WIDTH:
                raise SecurityError(f"format width {part} is larger than {MAX_FORMAT_WIDTH}")


def _check_brace_format(template: str) -> None:
    for _literal, _field, spec, _conversion in string.Formatter().parse(template):
        if not spec:
            continue
        if "{" in spec:
            raise SecurityError("nested format specs are not allowed")
        for digits in re.findall(r"\d+", spec):
            if int(digits) > MAX_FORMAT_WIDTH:
                raise SecurityError(f"format width {digits} is larger than {MAX_FORMAT_WIDTH}")


def _bounded_format(value: Any, *args: Any, **kwargs: Any) -> str:
    template = str(value)
    _check_percent_format(template)
    return _check_size(template % (kwargs or args))


def _bounded_center(value: Any, width: int = 80) -> str:
    _check_width(width)
    return do_center(value, width)


def _bounded_indent(
    value: Any, width: int | str = 4, first: bool = False, blank: bool = False
) -> str:
    _check_width(width if isinstance(width, int) else len(width))
    return _check_size(do_indent(value, width, first, blank))


def _bounded_batch(value: Any, linecount: int, fill_with: Any = None) -> Any:
    if isinstance(linecount, int) and linecount > MAX_SIZE:
        raise SecurityError(f"batch size {linecount} is larger than {MAX_SIZE}")
    return do_batch(value, linecount, fill_with)


def _bounded_slice(value: Any, slices: int, fill_with: Any = None) -> Any:
    if isinstance(slices, int) and slices > MAX_FORMAT_WIDTH:
        raise SecurityError(f"slice count {slices} is larger than {MAX_FORMAT_WIDTH}")
    return do_slice(value, slices, fill_with)


# String methods that can grow a string far beyond its inputs, and how to bound each call.
def _check_str_method(receiver: str, name: str, args: Sequence[Any]) -> None:
    if name in {"ljust", "rjust", "center", "zfill"} and args:
        _check_width(args[0])
    elif name == "expandtabs":
        if len(receiver) * (args[0] if args and isinstance(args[0], int) else 8) > MAX_SIZE:
            raise SecurityError("expandtabs result too large")
    elif name == "replace" and len(args) >= 2:
        old, new = str(args[0]), str(args[1])
        count = receiver.count(old) if old else len(receiver) + 1
        if len(receiver) + count * len(new) > MAX_SIZE:
            raise SecurityError("replace result too large")
    elif name == "join" and args:
        items = args[0]
        if isinstance(items, (list, tuple)) and len(receiver) * len(items) > MAX_SIZE:
            raise SecurityError("join result too large")


def _json_default(value: Any) -> Any:
    if isinstance(value, Mapping):
        return dict(value)
    return str(value)


def _finalize(value: Any) -> Any:
    """Print objects, lists, booleans and null as JSON inside a string template."""
    if isinstance(value, (Mapping, list, tuple, bool)) or value is None:
        return json.dumps(value, default=_json_default)
    return value


class _Sandbox(ImmutableSandboxedEnvironment):
    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})
    intercepted_unops = frozenset({"-", "+"})

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "**":
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and right > 0
                and max(left.bit_length(), 1) * right > MAX_INT_BITS
            ):
                raise SecurityError(f"number too large (over {MAX_INT_BITS} bits)")
        elif operator == "*":
            for sequence, count in ((left, right), (right, left)):
                if (
                    _size(sequence)
                    and isinstance(count, int)
                    and _size(sequence) * count > MAX_SIZE
                ):
                    raise SecurityError(f"result too large (over {MAX_SIZE} characters or items)")
            if (
                isinstance(left, int)
                and isinstance(right, int)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                raise SecurityError(f"number too large (over {MAX_INT_BITS} bits)")
        elif operator == "+" and _size(left) + _size(right) > MAX_SIZE:
            raise SecurityError(f"result too large (over {MAX_SIZE} characters or items)")
        elif operator == "%" and isinstance(left, str):
            _check_percent_format(left)
        result = super().call_binop(context, operator, left, right)
        return _check_size(_check_int(result))

    def call(
        __self,  # jinja's own signature: `self` may be passed as a keyword
        __context: Context,
        __obj: Any,
        *args: Any,
        **kwargs: Any,
    ) -> Any:
        receiver = getattr(__obj, "__self__", None)
        if isinstance(receiver, str):
            name = getattr(__obj, "__name__", "")
            _check_str_method(receiver, name, args)
        result = super().call(__context, __obj, *args, **kwargs)
        return _check_size(result)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        receiver = getattr(value, "__self__", None)
        if isinstance(receiver, str) and getattr(value, "__name__", "") in {"format", "format_map"}:
            _check_brace_format(receiver)
        return super().wrap_str_format(value)

    def getattr(self, obj: Any, attribute: str) -> Any:
        # `input.items` must be the key "items", not dict.items: data wins over methods.
        if isinstance(obj, Mapping) and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)


def _make_environment() -> _Sandbox:
    environment = _Sandbox(undefined=_Undefined, autoescape=False, finalize=_finalize)
    for name in ("lipsum", "cycler", "joiner"):
        environment.globals.pop(name, None)
    # The engine hands templates read-only mappings; `tojson` must print them like dicts.
    environment.policies["json.dumps_kwargs"] = {"sort_keys": True, "default": _json_default}
    environment.filters["format"] = _bounded_format
    environment.filters["center"] = _bounded_center
    environment.filters["indent"] = _bounded_indent
    environment.filters["batch"] = _bounded_batch
    environment.filters["slice"] = _bounded_slice
    # wordwrap's width is harmless, but xmlattr/urlize serve HTML, not workflows.
    for name in ("xmlattr", "urlize", "forceescape"):
        environment.filters.pop(name, None)
    return environment


_environment = _make_environment()


@lru_cache(maxsize=CACHE_SIZE)
def _compile_template(source: str) -> Template:
    return _environment.from_string(source)


@lru_cache(maxsize=CACHE_SIZE)
def _compile_expression(source: str) -> TemplateExpression:
    return _environment.compile_expression(source, undefined_to_none=False)


def is_template(value: Any) -> bool:
    """Say whether a param value is (or holds) a template to render at run time."""
    return isinstance(value, str) and ("{{" in value or "{%" in value)


def whole_expression(value: str) -> str | None:
    """Return the inner expression when `value`, trimmed, is exactly one `{{ … }}`."""
    match = _WHOLE_EXPRESSION.match(value)
    if match is None:
        return None
    body = match.group("body")
    if "{{" in body or "}}" in body or "{%" in body:
        return None
    return body


def to_plain(value: Any) -> Any:
    """Copy read-only mappings and tuples into plain JSON-shaped dicts and lists."""
    if isinstance(value, Mapping):
        return {str(key): to_plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_plain(item) for item in value]
    return value


def _describe(source: str) -> str:
    shown = source.strip()
    return shown if len(shown) <= 80 else shown[:77] + "..."


def _fail(source: str, exc: BaseException) -> NodeError:
    if isinstance(exc, UndefinedError):
        reason = f"undefined name: {exc.message}"
    elif isinstance(exc, SecurityError):
        reason = f"not allowed: {exc}"
    elif isinstance(exc, TemplateSyntaxError):
        reason = f"syntax error: {exc.message}"
    elif isinstance(exc, RecursionError):
        reason = "recursion too deep"
    elif isinstance(exc, MemoryError):
        reason = "out of memory"
    else:
        reason = f"{type(exc).__name__}: {exc}"
    return NodeError(f"Expression {_describe(source)!r} failed: {reason}", code="expression_error")


def _join_bounded(chunks: Iterator[str]) -> str:
    parts: list[str] = []
    total = 0
    for chunk in chunks:
        total += len(chunk)
        if total > MAX_SIZE:
            raise SecurityError(f"rendered output too large (over {MAX_SIZE} characters)")
        parts.append(chunk)
    return "".join(parts)


def render_string(source: str, scope: Mapping[str, Any]) -> Any:
    """Render one string: the native value for a whole `{{ … }}`, else a string."""
    if not is_template(source):
        return source
    try:
        body = whole_expression(source)
        if body is not None:
            value = _compile_expression(body)(**scope)
            if isinstance(value, _Undefined):
                str(value)  # raises UndefinedError naming what is missing
            return _check_size(to_plain(value))
        template = _compile_template(source)
        return _join_bounded(template.generate(**scope))
    except NodeError:
        raise
    except Exception as exc:  # any failure inside a template is the workflow's, not ours
        raise _fail(source, exc) from None


def render_value(value: Any, scope: Mapping[str, Any]) -> Any:
    """Render every template in a param value, walking dicts and lists."""
    if isinstance(value, str):
        return render_string(value, scope)
    if isinstance(value, Mapping):
        return {key: render_value(item, scope) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [render_value(item, scope) for item in value]
    return value


def make_scope(input: Any, nodes: Mapping[str, Any]) -> Mapping[str, Any]:
    """Build the read-only scope templates see; nothing is copied."""
    return MappingProxyType({"input": input, "nodes": MappingProxyType(dict(nodes))})


def render_params(
    params: Mapping[str, Any],
    scope: Mapping[str, Any],
    *,
    skip: Callable[[str], bool] | None = None,
) -> dict[str, Any]:
    """Render a node's params; `skip` names keys left as written (e.g. `credential`)."""
    return {
        key: (value if skip is not None and skip(key) else render_value(value, scope))
        for key, value in params.items()
    }
