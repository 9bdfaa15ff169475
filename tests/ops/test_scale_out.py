"""Scale-out, CI-sized: two web processes, three workers, one SIGKILLed mid-way.

The full-size run (500 executions) is `bench/scale_out.py`.
"""

from __future__ import annotations

import json

import pytest

from accounts.models import User
from tests.executions.conftest import EngineProcesses
from tests.ops.scale_out import NODE_IDS, WORKER_CONCURRENCY, run_scale_out

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

EXECUTIONS = 60


def test_scale_out_survives_a_killed_worker(
    owner: User, engine: EngineProcesses, fast_engine: None
) -> None:
    # when
    result = run_scale_out(owner=owner, engine=engine, executions=EXECUTIONS, timeout=180)

    # then
    print(json.dumps(result.as_dict(), indent=2))  # noqa: T201 - the run's figures, on failure
    assert result.executions == EXECUTIONS
    assert result.statuses == {"succeeded": EXECUTIONS}
    assert len(result.started_per_web) == 2
    assert all(count >= EXECUTIONS // 2 - 1 for count in result.started_per_web.values())
    # trigger + three nodes per execution, each stored as succeeded exactly once
    assert result.succeeded_node_runs == EXECUTIONS * (len(NODE_IDS) + 1)
    assert result.node_succeeded_lines_twice == []
    assert result.node_runs_finished_twice == []
    # only what the killed worker held in flight may have run again
    assert result.extra_node_runs <= WORKER_CONCURRENCY
    assert result.subscriber_errors == []
    assert result.subscriber_gaps == []
