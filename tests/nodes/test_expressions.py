"""Sandboxed expressions: native values, strict names, defaults, and the sandbox's bounds."""

from __future__ import annotations

import time
import tracemalloc
from types import MappingProxyType
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nodes.base import NodeError
from nodes.expressions import MAX_SIZE, make_scope, render_value

SCOPE = make_scope(
    {"x": 2, "name": "Ada", "items": [1, 2, 3], "flag": False, "nested": {"k": "v"}},
    {"get": {"status": 200, "body": {"items": ["a"], "keys": "not a method"}}},
)


def render(value: Any) -> Any:
    return render_value(value, SCOPE)


def expression_error(value: Any) -> str:
    with pytest.raises(NodeError) as caught:
        render(value)
    assert caught.value.code == "expression_error"
    assert caught.value.retryable is False
    return caught.value.message


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ input.x }}", 2),
        ("  {{ input.items }}\n", [1, 2, 3]),
        ("{{ input.flag }}", False),
        ("{{ input.nested }}", {"k": "v"}),
        ("{{ nodes.get.body.items }}", ["a"]),
        ("{{ nodes.get.body.keys }}", "not a method"),
        ("{{ none }}", None),
        ("{{ input.x * 3 + 1 }}", 7),
        ("{{ input.x > 1 }}", True),
        ("{{ input.items | length }}", 3),
        ("{{ input.name | upper }}", "ADA"),
        ("{{ input.missing | default(0) }}", 0),
        ("{{ nodes.skipped.status | default('none') }}", "none"),
        ("Hello {{ input.name }}!", "Hello Ada!"),
        ("{{ input.x }}{{ input.x }}", "22"),
        ("n={{ input.nested }}", 'n={"k": "v"}'),
        ("flag={{ input.flag }}", "flag=false"),
        ("plain text", "plain text"),
        ("{% if input.x > 1 %}big{% else %}small{% endif %}", "big"),
    ],
)
def test_renders(template, expected):
    assert render(template) == expected


def test_walks_dicts_and_lists_and_leaves_other_values():
    value = {"a": ["{{ input.x }}", {"b": "{{ input.name }}"}], "n": 5, "t": True, "z": None}
    assert render(value) == {"a": [2, {"b": "Ada"}], "n": 5, "t": True, "z": None}


def test_rendered_values_are_plain_copies():
    rendered = render("{{ input.nested }}")
    rendered["k"] = "changed"
    assert render("{{ input.nested.k }}") == "v"


@pytest.mark.parametrize(
    ("template", "words"),
    [
        ("{{ input.missing }}", "missing"),
        ("{{ nodes.skipped.status }}", "skipped"),
        ("x {{ input.nope }}", "nope"),
        ("{{ 1 / 0 }}", "division"),
        ("{{ input.x + }}", "syntax"),
        ("{{ ''.__class__ }}", "__class__"),
        ("{{ input.items.__class__.__mro__ }}", "__class__"),
        ("{{ input.items.append(4) }}", "append"),
        ("{{ lipsum() }}", "lipsum"),
        ("{{ cycler(1, 2) }}", "cycler"),
        ("{{ joiner() }}", "joiner"),
        ("{{ range.__init__.__globals__ }}", "__init__"),
    ],
)
def test_failures_are_expression_errors_naming_the_problem(template, words):
    assert words in expression_error(template)


@pytest.mark.parametrize(
    "template",
    [
        "{{ 'a' * 10**9 }}",
        "{{ 'a' * 10**8 }}",
        "{{ [0] * 10**9 }}",
        "{{ 10**100000 }}",
        "{{ 9 ** (9 ** 9) }}",
        "{{ ('a' * 1000000) + ('b' * 1000000) }}",
        "{{ '%1000000000d' | format(1) }}",
        "{{ '%*d' | format(1000000000, 1) }}",
        "{{ '%1000000000d' % 1 }}",
        "{{ '{:>1000000000}'.format(1) }}",
        "{{ '{:{w}}'.format(1, w=1000000000) }}",
        "{{ 'a'.ljust(1000000000) }}",
        "{{ 'a'.zfill(1000000000) }}",
        "{{ ('a' * 1000).replace('a', 'b' * 100000) }}",
        "{{ 'a' | center(1000000000) }}",
        "{{ 'a' | indent(1000000000, true) }}",
        "{{ [1] | batch(1000000000, 0) | list }}",
        "{% for i in range(100000) %}{{ 'xxxxxxxxxxxxxxxxxxxx' }}{% endfor %}",
    ],
)
def test_unbounded_allocation_is_refused_quickly(template):
    tracemalloc.start()
    started = time.monotonic()
    try:
        message = expression_error(template)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 5
    assert peak < 50 * MAX_SIZE
    assert "failed" in message


def test_compiled_once_and_cached():
    from nodes.expressions import _compile_expression

    _compile_expression.cache_clear()
    for _ in range(5):
        render("{{ input.x + 40 }}")
    info = _compile_expression.cache_info()
    assert info.misses == 1
    assert info.hits == 4


def test_read_only_views_from_the_engine_render_like_plain_data():
    frozen = make_scope(
        MappingProxyType({"obj": MappingProxyType({"a": (1, 2)}), "n": 1}),
        {"prev": MappingProxyType({"list": (MappingProxyType({"k": "v"}),)})},
    )
    assert render_value("{{ input.obj }}", frozen) == {"a": [1, 2]}
    assert render_value("{{ input.obj | tojson }}", frozen) == '{"a": [1, 2]}'
    assert render_value("x={{ nodes.prev.list }}", frozen) == 'x=[{"k": "v"}]'
    assert render_value("{{ nodes.prev.list[0].k }}", frozen) == "v"
    assert render_value("{{ input.obj.a | length }}", frozen) == 2


def test_scope_is_read_only():
    with pytest.raises(TypeError):
        SCOPE["input"] = {}  # type: ignore[index]
    with pytest.raises(TypeError):
        SCOPE["nodes"]["get"] = {}


def outcome(template: str) -> str:
    try:
        render(template)
    except NodeError as error:
        return error.code
    return "rendered"


_pieces = st.sampled_from(
    [
        "input",
        "nodes",
        "input.x",
        "input.items",
        "nodes.get",
        "1",
        "0",
        "'a'",
        "10",
        "9",
        "+",
        "-",
        "*",
        "/",
        "//",
        "%",
        "**",
        "~",
        " and ",
        " or ",
        " not ",
        "==",
        "<",
        "(",
        ")",
        "[",
        "]",
        "|",
        "length",
        "upper",
        "default(1)",
        "join",
        ".",
        ",",
        "__class__",
        "range(5)",
        "''",
        "format",
        "center(3)",
        "{",
        "}",
    ]
)


@settings(max_examples=400, deadline=None)
@given(body=st.lists(_pieces, max_size=10).map(" ".join), prefix=st.sampled_from(["", "x "]))
def test_random_expressions_render_or_raise_node_error(body, prefix):
    assert outcome(prefix + "{{ " + body + " }}") in ("rendered", "expression_error")


@settings(max_examples=200, deadline=None)
@given(text=st.text(max_size=40))
def test_random_text_renders_or_raises_node_error(text):
    result = outcome(text)
    assert result in ("rendered", "expression_error")
    if "{{" not in text and "{%" not in text:
        assert render(text) == text
