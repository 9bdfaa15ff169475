"""Param validation: lenient at save time (templates may stand for anything), strict at run time.

At save time a param value that is a template (`{{ … }}`) is accepted for any field, since
only the rendered value can be judged; everything else must already fit the type's `Params`.
At run time the rendered params must fit exactly, or the node fails with `node_error`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pydantic

from nodes.base import Node, NodeError, NodeParams
from nodes.expressions import is_template, render_params

FieldError = tuple[str, str]


def _field_name(location: tuple[int | str, ...]) -> str:
    name = ""
    for part in location:
        name += f"[{part}]" if isinstance(part, int) else (f".{part}" if name else str(part))
    return name


def _value_at(params: Any, location: tuple[int | str, ...]) -> tuple[bool, Any]:
    value = params
    for part in location:
        in_mapping = isinstance(value, Mapping) and part in value
        in_list = isinstance(value, list) and isinstance(part, int) and 0 <= part < len(value)
        if not (in_mapping or in_list):
            return False, None
        value = value[part]
    return True, value


def _templated_along(params: Any, location: tuple[int | str, ...]) -> bool:
    """Say whether the value at `location`, or a container holding it, is a template."""
    for length in range(1, len(location) + 1):
        found, value = _value_at(params, location[:length])
        if found and is_template(value):
            return True
    return False


def _pydantic_errors(error: pydantic.ValidationError) -> list[tuple[tuple[int | str, ...], str]]:
    return [(tuple(item["loc"]), item["msg"]) for item in error.errors(include_url=False)]


def _field_for_error(node_class: type[Node], location: tuple[int | str, ...]) -> str:
    # An alias (http's `json`) is what the graph says, so name the field by it.
    if location and isinstance(location[0], str):
        field = node_class.Params.model_fields.get(location[0])
        if field is not None and field.alias:
            location = (field.alias, *location[1:])
    return _field_name(location)


def check_params_for_save(node_class: type[Node], params: Any) -> list[FieldError]:
    """List `(field, message)` problems in a node's params as saved (templates tolerated)."""
    if not isinstance(params, Mapping):
        return [("", "Params must be an object.")]
    if not node_class.allows_templates:
        templated = [key for key, value in params.items() if _contains_template(value)]
        if templated:
            return [(str(key), "This node type does not allow templates.") for key in templated]
    try:
        node_class.Params.model_validate(dict(params), context={"save": True})
    except pydantic.ValidationError as error:
        problems: list[FieldError] = []
        for location, message in _pydantic_errors(error):
            if _templated_along(params, location):
                continue
            problems.append((_field_for_error(node_class, location), _clean(message)))
        return problems
    return []


def params_for_run(node_class: type[Node], rendered: Any) -> NodeParams:
    """Validate rendered params strictly; a misfit fails the node with `node_error`."""
    try:
        return node_class.Params.model_validate(rendered, context={"save": False})
    except pydantic.ValidationError as error:
        described = "; ".join(
            f"{_field_for_error(node_class, location) or 'params'}: {_clean(message)}"
            for location, message in _pydantic_errors(error)
        )
        raise NodeError(f"Invalid params: {described}", code="node_error") from None


def _contains_template(value: Any) -> bool:
    if isinstance(value, Mapping):
        return any(_contains_template(item) for item in value.values())
    if isinstance(value, list):
        return any(_contains_template(item) for item in value)
    return is_template(value)


def _clean(message: str) -> str:
    # pydantic prefixes messages raised by our own validators with "Value error, ".
    return message.removeprefix("Value error, ")


def scalar_as_text(value: Any) -> Any:
    """Let a template that renders a number or boolean fill a text field (`"{{ input.n }}"`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return value


def is_saving(info: pydantic.ValidationInfo) -> bool:
    """Say whether a validator runs at save time (where templates stand in for values)."""
    context = info.context
    return bool(isinstance(context, Mapping) and context.get("save"))


def render_and_validate(
    node_class: type[Node], params: Mapping[str, Any], scope: Mapping[str, Any]
) -> NodeParams:
    """Render a node's params against `scope`, then validate them strictly for `run`."""
    rendered = render_params(params, scope, skip=node_class.raw_params.__contains__)
    return params_for_run(node_class, rendered)
