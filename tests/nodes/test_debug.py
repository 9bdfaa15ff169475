"""The debug node logs its message and passes its parents' output on."""

from __future__ import annotations

import pytest

from nodes.base import NodeError
from tests.nodes.helpers import LogCollector, run_node


def test_logs_rendered_message_at_level_and_passes_single_parent_output():
    log = LogCollector()
    result = run_node(
        "debug",
        {"message": "status {{ nodes.get.status }}", "level": "warning"},
        nodes={"get": {"status": 200}},
        parents=("get",),
        log=log,
    )
    assert log.lines == [("warning", "status 200", None)]
    assert result.output == {"status": 200}


def test_several_parents_give_a_map_by_parent_id_of_those_that_ran():
    result = run_node(
        "debug",
        {"message": "x"},
        nodes={"a": 1, "b": [2]},
        parents=("a", "b", "skipped"),
    )
    assert result.output == {"a": 1, "b": [2]}


def test_default_level_is_info():
    log = LogCollector()
    run_node("debug", {"message": "hi"}, log=log)
    assert log.lines[0][0] == "info"


def test_unknown_level_fails():
    with pytest.raises(NodeError):
        run_node("debug", {"message": "hi", "level": "loud"})
