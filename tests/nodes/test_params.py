"""Param validation: templates tolerated on save, rendered params checked strictly at run."""

from __future__ import annotations

import pytest

from nodes.base import NodeError
from nodes.expressions import make_scope
from nodes.params import check_params_for_save, params_for_run, render_and_validate
from nodes.registry import get_node_class


def node_class(name: str):
    found = get_node_class(name)
    assert found is not None
    return found


def test_save_accepts_templates_for_any_field():
    problems = check_params_for_save(
        node_class("http"),
        {
            "method": "{{ input.method }}",
            "url": "{{ input.url }}",
            "query": "{{ input.query }}",
            "timeout_seconds": "{{ input.t }}",
            "retry_on_status": ["{{ input.s }}"],
        },
    )
    assert problems == []


def test_save_reports_literal_problems_by_field():
    problems = check_params_for_save(
        node_class("http"),
        {
            "method": "FETCH",
            "url": "ftp://x",
            "timeout_seconds": 0,
            "bogus": 1,
            "json": 1,
            "body": "b",
        },
    )
    fields = {field for field, _message in problems}
    assert fields == {"method", "url", "timeout_seconds", "bogus"}


def test_bad_address_names_the_list_field():
    problems = check_params_for_save(node_class("email"), {"to": ["nobody"], "text": "x"})
    assert problems == [("to", "'nobody' is not an e-mail address.")]


def test_run_time_validation_is_strict():
    with pytest.raises(NodeError) as caught:
        params_for_run(node_class("delay"), {"seconds": "soon"})
    assert caught.value.code == "node_error"
    assert "seconds" in caught.value.message


def test_rendered_values_are_validated():
    scope = make_scope({"wait": "-3"}, {})
    with pytest.raises(NodeError) as caught:
        render_and_validate(node_class("delay"), {"seconds": "{{ input.wait }}"}, scope)
    assert caught.value.code == "node_error"
    ok = render_and_validate(node_class("delay"), {"seconds": "{{ input.wait | int + 5 }}"}, scope)
    assert ok.seconds == 2  # type: ignore[attr-defined]


def test_credential_is_never_rendered():
    scope = make_scope({"c": "someone-elses"}, {})
    params = render_and_validate(
        node_class("http"),
        {"url": "https://example.org", "credential": "{{ input.c }}"},
        scope,
    )
    assert params.credential == "{{ input.c }}"  # type: ignore[attr-defined]


def test_expression_failure_while_rendering_is_expression_error():
    with pytest.raises(NodeError) as caught:
        render_and_validate(
            node_class("transform"), {"fields": {"a": "{{ input.x }}"}}, make_scope({}, {})
        )
    assert caught.value.code == "expression_error"
