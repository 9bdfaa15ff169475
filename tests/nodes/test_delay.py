"""The delay node asks the engine to wait; bounded to 30 days."""

from __future__ import annotations

import datetime as dt

import pytest

from nodes.base import NodeContext, NodeError
from nodes.registry import get_node_class
from tests.nodes.helpers import run_node


def test_seconds_ask_to_wait():
    before = dt.datetime.now(dt.UTC)
    result = run_node("delay", {"seconds": "{{ input.s }}"}, input={"s": 3})
    assert result.wait_until is not None
    assert dt.timedelta(seconds=2.9) < result.wait_until - before < dt.timedelta(seconds=4)


def test_until_in_the_future_and_past():
    later = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    assert run_node("delay", {"until": later.isoformat()}).wait_until == later
    past = run_node("delay", {"until": "2020-01-01T00:00:00Z"})
    assert past.wait_until is None
    assert "resumed_at" in past.output


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"seconds": 1, "until": "2030-01-01T00:00:00Z"},
        {"seconds": -1},
        {"seconds": 31 * 24 * 3600},
        {"until": "2030-01-01T00:00:00"},
        {"until": "tomorrow"},
    ],
)
def test_invalid_params_fail(params):
    with pytest.raises(NodeError) as caught:
        run_node("delay", params)
    assert caught.value.code == "node_error"


def test_until_beyond_30_days_fails():
    far = dt.datetime.now(dt.UTC) + dt.timedelta(days=40)
    with pytest.raises(NodeError):
        run_node("delay", {"until": far.isoformat()})


def test_resume_outputs_resumed_at():
    node_class = get_node_class("delay")
    assert node_class is not None
    context = NodeContext(execution_id="e", node_id="d", input={}, nodes={})
    output = node_class().resume(context, None).output
    assert dt.datetime.fromisoformat(output["resumed_at"]).tzinfo is not None
