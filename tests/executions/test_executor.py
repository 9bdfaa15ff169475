"""The executor on its own: no database, no broker; an in-memory store stands in for both."""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from typing import Any

import pytest

import tests.executions.nodetypes  # noqa: F401 - registers the test node types
from executions.executor import (
    AncestorView,
    Executor,
    LogLine,
    NodeState,
    Outcome,
    RetryPolicy,
    freeze,
    plan_build,
)


class MemoryStore:
    """What the database store does, in memory: stored copies, a cache, a cancel flag."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeState] = {}
        self.logs: list[LogLine] = []
        self.final: dict[str, Any] | None = None
        self.wake_at: dt.datetime | None = None
        self.cancel = False
        self.cache: dict[str, tuple[Any, float]] = {}
        self.checkpoints = 0

    def _apply(self, nodes: list[NodeState], logs: list[LogLine]) -> None:
        for state in nodes:
            self.nodes[state.node_id] = dataclasses.replace(state, dirty=False)
        self.logs.extend(logs)

    def checkpoint(self, *, nodes, logs):
        self.checkpoints += 1
        self._apply(nodes, logs)
        return self.cancel

    def finish(self, *, status, output, error, nodes, logs):
        self._apply(nodes, logs)
        self.final = {"status": status, "output": output, "error": error}

    def wait(self, *, wake_at, nodes, logs):
        self._apply(nodes, logs)
        self.wake_at = wake_at

    def release(self, *, nodes, logs):
        self._apply(nodes, logs)

    def cancel_requested(self):
        return self.cancel

    def cache_get(self, key):
        if key in self.cache and self.cache[key][1] > time.monotonic():
            return True, self.cache[key][0]
        return False, None

    def cache_put(self, key, output, ttl_seconds):
        self.cache[key] = (output, time.monotonic() + ttl_seconds)

    def credential(self, credential_id):
        return None

    def messages(self, node_id: str | None = None) -> list[str]:
        return [line.message for line in self.logs if node_id is None or line.node_id == node_id]


class FakeClock:
    def __init__(self) -> None:
        self.now = dt.datetime.now(dt.UTC)

    def __call__(self) -> dt.datetime:
        return self.now


def node(node_id: str, type_: str = "test_emit", **extra: Any) -> dict[str, Any]:
    return {"id": node_id, "type": type_, "params": extra.pop("params", {}), **extra}


def graph(nodes: list[dict[str, Any]], edges: list[tuple], **settings: Any) -> dict[str, Any]:
    all_nodes = [node("t", "trigger", params={"mode": "manual"}), *nodes]
    return {
        "nodes": all_nodes,
        "edges": [
            {"source": e[0], "target": e[1], **({"branch": e[2]} if len(e) > 2 else {})}
            for e in edges
        ],
        "settings": settings,
    }


def run(
    spec: dict[str, Any],
    input: dict[str, Any] | None = None,
    *,
    store: MemoryStore | None = None,
    clock: FakeClock | None = None,
    max_rounds: int = 50,
) -> tuple[MemoryStore, Outcome]:
    """Run to a terminal state, resuming from the store after every wait (as the task does)."""
    store = store or MemoryStore()
    clock = clock or FakeClock()
    plan = plan_build(spec)
    outcome = Outcome(status="queued")
    for _ in range(max_rounds):
        executor = Executor(
            plan=plan,
            execution_id="exec-1",
            input=input or {},
            nodes={k: dataclasses.replace(v) for k, v in store.nodes.items()},
            store=store,
            clock=clock,
            deadline_at=(
                clock.now + dt.timedelta(seconds=plan.timeout_seconds)
                if plan.timeout_seconds and store.final is None and not store.nodes
                else getattr(store, "deadline", None)
            ),
            rng=lambda: 0.5,
        )
        if not store.nodes:
            store.deadline = executor.deadline_at  # type: ignore[attr-defined]
        outcome = executor.run()
        if outcome.status != "waiting":
            return store, outcome
        assert outcome.wake_at is not None
        clock.now = max(clock.now, outcome.wake_at)
    raise AssertionError("did not finish")


def test_chain_runs_in_topological_order_and_outputs_leaves():
    # given: nodes listed out of order
    spec = graph(
        [
            node("c", params={"value": "{{ nodes.b }}"}),
            node("b", params={"value": "{{ nodes.a.x + 1 }}"}),
            node("a", params={"value": {"x": "{{ input.n }}"}}),
        ],
        [("t", "a"), ("a", "b"), ("b", "c")],
    )
    # when
    store, outcome = run(spec, {"n": 41})
    # then
    assert outcome.status == "succeeded"
    assert outcome.output == {"c": 42}
    started = [line.node_id for line in store.logs if line.message == "Node started"]
    assert started == ["t", "a", "b", "c"]
    assert all(store.nodes[n].status == "succeeded" for n in "tabc")


def test_condition_skips_untaken_branch_transitively_and_join_still_runs():
    spec = graph(
        [
            node("cond", "condition", params={"expression": "{{ input.go }}"}),
            node("yes", params={"value": "yes"}),
            node("no", params={"value": "no"}),
            node("after_no", params={"value": "after"}),
            node("join", params={"value": "{{ nodes.yes | default('none') }}"}),
        ],
        [
            ("t", "cond"),
            ("cond", "yes", "true"),
            ("cond", "no", "false"),
            ("no", "after_no"),
            ("yes", "join"),
            ("after_no", "join"),
        ],
    )
    store, outcome = run(spec, {"go": True})
    assert outcome.status == "succeeded"
    assert store.nodes["no"].status == "skipped"
    assert store.nodes["after_no"].status == "skipped"
    assert store.nodes["join"].status == "succeeded"
    assert outcome.output == {"join": "yes"}
    assert "Node skipped: no incoming edge was taken" in store.messages("after_no")

    store, outcome = run(spec, {"go": False})
    assert store.nodes["yes"].status == "skipped"
    assert store.nodes["join"].output == "none"


def test_node_whose_only_parent_is_skipped_is_skipped_and_a_stray_root_too():
    spec = graph(
        [
            node("cond", "condition", params={"expression": "{{ false }}"}),
            node("a"),
            node("b"),
            node("stray"),
        ],
        [("t", "cond"), ("cond", "a", "true"), ("a", "b")],
    )
    store, outcome = run(spec)
    assert outcome.status == "succeeded"
    assert [store.nodes[n].status for n in ("a", "b", "stray")] == ["skipped"] * 3
    assert outcome.output == {}


def test_context_is_read_only_and_isolated():
    spec = graph(
        [
            node("a", params={"value": {"items": [1, 2, 3], "value": 1}}),
            node("m", "test_mutate"),
            node("b", params={"value": "{{ nodes.a['items'] | length }}-{{ input.x }}"}),
        ],
        [("t", "a"), ("a", "m"), ("m", "b")],
    )
    store, outcome = run(spec, {"x": "original"})
    assert outcome.status == "succeeded"
    assert store.nodes["m"].output == {
        "input": "refused",
        "nodes": "refused",
        "nested": "refused",
        "nested_dict": "refused",
    }
    assert store.nodes["b"].output == "3-original"


def test_a_node_sees_only_its_ancestors():
    spec = graph(
        [node("left", params={"value": 1}), node("right", params={"value": "{{ nodes.left }}"})],
        [("t", "left"), ("t", "right")],
    )
    _store, outcome = run(spec)
    assert outcome.status == "failed"
    assert (outcome.error or {})["code"] == "expression_error"
    assert (outcome.error or {})["node_id"] == "right"


def test_ancestor_view_does_not_copy_and_filters():
    outputs = {"a": freeze({"x": [1]}), "b": 2}
    view = AncestorView(outputs, frozenset({"a"}))
    assert list(view) == ["a"]
    assert "b" not in view
    with pytest.raises(KeyError):
        view["b"]
    assert view["a"] is outputs["a"]


def test_on_error_stop_fails_execution_and_leaves_rest_pending():
    spec = graph(
        [node("bad", "test_flaky", params={"fail_times": 5, "retryable": False}), node("after")],
        [("t", "bad"), ("bad", "after")],
    )
    store, outcome = run(spec)
    assert outcome.status == "failed"
    assert outcome.error == {"code": "node_error", "message": "planned failure 1", "node_id": "bad"}
    assert store.nodes["bad"].status == "failed"
    assert "after" not in store.nodes  # never written: its row stays pending


def test_on_error_continue_exposes_error_and_execution_succeeds():
    spec = graph(
        [
            node(
                "bad",
                "test_flaky",
                params={"fail_times": 5, "retryable": False},
                on_error="continue",
            ),
            node("after", params={"value": "{{ nodes.bad.error.code }}"}),
        ],
        [("t", "bad"), ("bad", "after")],
    )
    store, outcome = run(spec)
    assert outcome.status == "succeeded"
    assert store.nodes["bad"].status == "failed"
    assert store.nodes["after"].output == "node_error"


def test_retries_wait_with_growing_backoff_then_succeed():
    spec = graph(
        [
            node(
                "flaky",
                "test_flaky",
                params={"fail_times": 3},
                retry={"max_attempts": 4, "backoff_seconds": 1, "backoff_factor": 2},
            )
        ],
        [("t", "flaky")],
    )
    clock = FakeClock()
    start = clock.now
    store, outcome = run(spec, clock=clock)
    assert outcome.status == "succeeded"
    assert store.nodes["flaky"].attempts == 4
    assert store.nodes["flaky"].output == {"attempt": 4}
    # rng 0.5 → no jitter: 1 + 2 + 4 seconds of back-off
    assert clock.now - start == dt.timedelta(seconds=7)
    retries = [m for m in store.messages("flaky") if "retry scheduled" in m]
    assert retries == [
        "Attempt 1 failed; retry scheduled in 1.00 s",
        "Attempt 2 failed; retry scheduled in 2.00 s",
        "Attempt 3 failed; retry scheduled in 4.00 s",
    ]


def test_retries_exhausted_fail_with_last_error():
    spec = graph(
        [node("flaky", "test_flaky", params={"fail_times": 9}, retry={"max_attempts": 2})],
        [("t", "flaky")],
    )
    store, outcome = run(spec)
    assert outcome.status == "failed"
    assert store.nodes["flaky"].attempts == 2
    assert (outcome.error or {})["message"] == "planned failure 2"


def test_backoff_jitter_is_bounded_and_capped():
    policy = RetryPolicy(backoff_seconds=1, backoff_factor=10, max_backoff_seconds=30)
    assert 0.8 <= policy.delay_for(1, lambda: 0.0) <= 1.2
    assert policy.delay_for(1, lambda: 0.999) <= 1.2
    assert policy.delay_for(5, lambda: 0.999) == 30


def test_node_timeout_interrupts_a_blocking_node():
    spec = graph(
        [node("slow", "test_sleep", params={"seconds": 5}, timeout_seconds=0.3)],
        [("t", "slow")],
    )
    started = time.monotonic()
    _store, outcome = run(spec)
    assert time.monotonic() - started < 2
    assert outcome.status == "failed"
    assert (outcome.error or {})["code"] == "node_timeout"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), {"deep": [float("-inf")]}])
def test_an_output_with_a_number_json_has_not_fails_the_node(value):
    spec = graph([node("odd", params={"value": value})], [("t", "odd")])
    store, outcome = run(spec, {})
    assert outcome.status == "failed"
    error = store.nodes["odd"].error or {}
    assert (error["code"], store.nodes["odd"].output) == ("node_error", None)
    assert "not JSON" in error["message"]


def test_an_output_with_a_lone_surrogate_fails_the_node():
    spec = graph([node("odd", params={"value": {"text": "a\udc00"}})], [("t", "odd")])
    store, outcome = run(spec, {})
    assert outcome.status == "failed"
    error = store.nodes["odd"].error or {}
    assert error["code"] == "node_error"
    assert "lone surrogate" in error["message"]


def test_output_too_large_fails_never_truncates(settings):
    spec = graph([node("big", "test_big", params={"size": 2000})], [("t", "big")])
    store = MemoryStore()
    plan = plan_build(spec)
    outcome = Executor(
        plan=plan, execution_id="e", input={}, nodes={}, store=store, output_max_bytes=1000
    ).run()
    assert outcome.status == "failed"
    assert (outcome.error or {})["code"] == "output_too_large"
    assert store.nodes["big"].output is None


def test_cache_hit_reuses_output_and_says_so():
    spec = graph(
        [node("r", "test_random", params={"salt": "{{ input.s }}"}, cache_ttl_seconds=60)],
        [("t", "r")],
    )
    shared = MemoryStore()
    _, out_a = run(spec, {"s": "a"}, store=shared)
    store_b = MemoryStore()
    store_b.cache = shared.cache
    store_b, out_b = run(spec, {"s": "a"}, store=store_b)
    assert out_a.output == out_b.output
    assert store_b.nodes["r"].cached is True
    assert "Cache hit: reusing a stored result" in store_b.messages("r")
    # other params → another key
    store_c = MemoryStore()
    store_c.cache = shared.cache
    store_c, out_c = run(spec, {"s": "b"}, store=store_c)
    assert out_c.output != out_a.output
    assert store_c.nodes["r"].cached is False


def test_cancel_stops_before_next_node():
    spec = graph([node("a"), node("b")], [("t", "a"), ("a", "b")])
    store = MemoryStore()
    store.cancel = True
    store, outcome = run(spec, store=store)
    assert outcome.status == "cancelled"
    assert {s.status for s in store.nodes.values()} == {"cancelled"}


def test_delay_waits_then_resumes_without_rerunning_finished_nodes():
    spec = graph(
        [node("a"), node("d", "delay", params={"seconds": 30}), node("b")],
        [("t", "a"), ("a", "d"), ("d", "b")],
    )
    store = MemoryStore()
    clock = FakeClock()
    plan = plan_build(spec)
    first = Executor(plan=plan, execution_id="e", input={}, nodes={}, store=store, clock=clock)
    outcome = first.run()
    assert outcome.status == "waiting"
    assert outcome.wake_at is not None
    assert abs((outcome.wake_at - clock.now).total_seconds() - 30) < 1
    assert store.nodes["d"].status == "waiting"
    clock.now = outcome.wake_at
    second = Executor(
        plan=plan,
        execution_id="e",
        input={},
        nodes={k: dataclasses.replace(v) for k, v in store.nodes.items()},
        store=store,
        clock=clock,
    )
    outcome = second.run()
    assert outcome.status == "succeeded"
    assert store.messages().count("Node started") == 4
    assert "Node resumed after waiting" in store.messages("d")


def test_execution_timeout_during_a_wait_names_the_waiting_node():
    spec = graph([node("d", "delay", params={"seconds": 100})], [("t", "d")], timeout_seconds=10)
    store, outcome = run(spec)
    assert outcome.status == "failed"
    assert (outcome.error or {})["code"] == "execution_timeout"
    assert (outcome.error or {})["node_id"] == "d"
    assert store.nodes["d"].status == "failed"


def test_interrupted_node_runs_again_but_at_most_once_node_fails():
    spec = graph([node("a"), node("once", "test_once")], [("t", "a"), ("t", "once")])
    plan = plan_build(spec)
    store = MemoryStore()
    nodes = {
        "t": NodeState("t", "trigger", status="succeeded", attempts=1, output={}),
        "a": NodeState("a", "test_emit", status="running", attempts=1),
        "once": NodeState("once", "test_once", status="running", attempts=1),
    }
    outcome = Executor(plan=plan, execution_id="e", input={}, nodes=nodes, store=store).run()
    assert outcome.status == "failed"
    assert (outcome.error or {})["code"] == "delivery_unknown"


def test_long_chain_overhead_is_small():
    count = 300
    nodes = [node(f"n{i}") for i in range(count)]
    edges = [("t", "n0")] + [(f"n{i}", f"n{i + 1}") for i in range(count - 1)]
    started = time.perf_counter()
    store, outcome = run(graph(nodes, edges))
    elapsed = time.perf_counter() - started
    assert outcome.status == "succeeded"
    assert len(store.nodes) == count + 1
    assert elapsed < 5  # generous: a loaded 2-core machine; the bench measures precisely


@pytest.mark.parametrize(
    "expression",
    ["{{ ''.__class__.__mro__ }}", "{{ 'a' * 10**9 }}", "{{ 1 / 0 }}", "{{ input.missing }}"],
)
def test_bad_expression_fails_only_that_node(expression):
    spec = graph(
        [
            node("bad", params={"value": expression}, on_error="continue"),
            node("ok", params={"value": 1}),
        ],
        [("t", "bad"), ("t", "ok")],
    )
    store, outcome = run(spec)
    assert outcome.status == "succeeded"
    assert store.nodes["bad"].status == "failed"
    assert (store.nodes["bad"].error or {})["code"] == "expression_error"
    assert outcome.output == {"bad": {"error": store.nodes["bad"].error}, "ok": 1}
