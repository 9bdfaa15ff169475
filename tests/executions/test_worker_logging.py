"""Worker log lines name the execution and the node they are about."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest

from autoflow.logging import structured_formatter
from executions.models import Execution
from executions.services import execution_start
from executions.tasks import run_execution_task
from nodes.base import Node, NodeContext, NodeParams, NodeResult
from nodes.registry import register, unregister
from workflows.services import workflow_create

pytestmark = pytest.mark.django_db(transaction=True)
node_logger = logging.getLogger("tests.worker_logging")


class LoggingNode(Node):
    type = "test_stdlib_logging"
    Params = NodeParams

    def run(self, ctx: NodeContext, params: Any) -> NodeResult:
        node_logger.warning("talking to the outside world")
        return NodeResult(output={"ok": True})


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(structured_formatter("json"))
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


def test_log_lines_during_a_node_carry_execution_and_node_ids(owner):
    # given
    register(LoggingNode)
    capture = _Capture()
    node_logger.addHandler(capture)
    try:
        workflow = workflow_create(
            owner=owner,
            name="logs",
            graph={
                "nodes": [
                    {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
                    {"id": "talker", "type": "test_stdlib_logging", "params": {}},
                ],
                "edges": [{"source": "t", "target": "talker"}],
            },
        )
        execution, _ = execution_start(workflow=workflow, trigger="manual", input={}, user=owner)
        # when: the task body runs here, as a worker would run it
        run_execution_task.run(str(execution.pk))
    finally:
        node_logger.removeHandler(capture)
        unregister("test_stdlib_logging")
    # then
    assert Execution.objects.get(pk=execution.pk).status == "succeeded"
    line = next(x for x in capture.lines if x["event"] == "talking to the outside world")
    assert line["execution_id"] == str(execution.pk)
    assert line["node_id"] == "talker"
