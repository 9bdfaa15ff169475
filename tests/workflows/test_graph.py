"""Graph validation and parsing: every rule of SPEC.md "Graph", no database needed."""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoflow.exceptions import GraphInvalid
from workflows.graph import RetryPolicy, parse_graph, validate_graph

SMTP_ID = "11111111-1111-1111-1111-111111111111"
BEARER_ID = "22222222-2222-2222-2222-222222222222"
CREDENTIALS = {SMTP_ID: "smtp", BEARER_ID: "http_bearer"}


def good_graph() -> dict[str, Any]:
    return {
        "nodes": [
            {"id": "t", "type": "trigger", "params": {"mode": "manual"}},
            {
                "id": "get",
                "type": "http",
                "params": {"method": "GET", "url": "https://example.org/items/{{ input.id }}"},
                "retry": {
                    "max_attempts": 3,
                    "backoff_seconds": 1,
                    "backoff_factor": 2,
                    "max_backoff_seconds": 60,
                },
                "timeout_seconds": 10,
                "on_error": "stop",
                "cache_ttl_seconds": 0,
            },
            {
                "id": "check",
                "type": "condition",
                "params": {"expression": "{{ nodes.get.status == 200 }}"},
            },
            {"id": "log", "type": "debug", "params": {"message": "got {{ nodes.get.status }}"}},
            {"id": "shape", "type": "transform", "params": {"fields": {"a": "{{ input.a }}"}}},
        ],
        "edges": [
            {"source": "t", "target": "get"},
            {"source": "get", "target": "check"},
            {"source": "check", "target": "log", "branch": "true"},
            {"source": "check", "target": "shape", "branch": "false"},
        ],
        "settings": {"timeout_seconds": 3600},
    }


def errors_of(graph: Any, **kwargs: Any) -> list[dict[str, Any]]:
    with pytest.raises(GraphInvalid) as caught:
        validate_graph(graph, credentials=kwargs.pop("credentials", CREDENTIALS), **kwargs)
    assert caught.value.code == "graph_invalid"
    return list(caught.value.details["errors"])


def test_valid_graph_passes():
    try:
        validate_graph(good_graph(), credentials=CREDENTIALS)
    except GraphInvalid as error:
        pytest.fail(f"a valid graph was refused: {error.details}")


@pytest.mark.parametrize("graph", [None, [], "x", {"edges": []}, {"nodes": {}, "edges": []}])
def test_wrong_shapes_are_graph_invalid(graph):
    assert errors_of(graph)


def test_every_error_is_reported_at_once_with_node_and_field():
    graph = good_graph()
    graph["nodes"][1]["params"]["method"] = "FETCH"
    graph["nodes"][1]["retry"]["max_attempts"] = 0
    graph["nodes"][3]["on_error"] = "ignore"
    errors = errors_of(graph)
    assert {(e["node_id"], e["field"]) for e in errors} == {
        ("get", "params.method"),
        ("get", "retry.max_attempts"),
        ("log", "on_error"),
    }
    assert all(e["message"] for e in errors)


def test_duplicate_ids_unknown_types_and_bad_ids():
    graph = good_graph()
    graph["nodes"].append({"id": "log", "type": "debug"})
    graph["nodes"].append({"id": "x", "type": "teleport"})
    graph["nodes"].append({"id": "bad id!", "type": "debug"})
    errors = errors_of(graph)
    assert {"node_id": "log", "field": "id", "message": "Duplicate node id 'log'."} in errors
    assert any(e["node_id"] == "x" and e["field"] == "type" for e in errors)
    assert any(e["field"] == "nodes[7].id" for e in errors)


def test_edges_must_join_existing_nodes_without_self_loops():
    graph = good_graph()
    graph["edges"].append({"source": "log", "target": "ghost"})
    graph["edges"].append({"source": "shape", "target": "shape"})
    errors = errors_of(graph)
    assert any(e["field"] == "edges[4].target" and "ghost" in e["message"] for e in errors)
    assert any(e["field"] == "edges[5].target" and e["node_id"] == "shape" for e in errors)


def test_cycle_is_named():
    graph = good_graph()
    graph["edges"].append({"source": "log", "target": "get"})
    errors = errors_of(graph)
    cycle = [e for e in errors if "cycle" in e["message"]]
    assert len(cycle) == 1
    assert "get" in cycle[0]["message"]
    assert "log" in cycle[0]["message"]


@pytest.mark.parametrize("triggers", [0, 2])
def test_exactly_one_trigger(triggers):
    graph = good_graph()
    graph["nodes"] = [n for n in graph["nodes"] if n["type"] != "trigger"]
    graph["edges"] = [e for e in graph["edges"] if e["source"] != "t"]
    for index in range(triggers):
        graph["nodes"].append({"id": f"t{index}", "type": "trigger", "params": {}})
    errors = errors_of(graph)
    assert any("trigger" in e["message"] for e in errors)


def test_trigger_cannot_have_incoming_edges():
    graph = good_graph()
    graph["edges"].append({"source": "log", "target": "t"})
    assert any(e["node_id"] == "t" for e in errors_of(graph))


def test_condition_edges_need_a_branch_and_others_must_not_have_one():
    graph = good_graph()
    del graph["edges"][2]["branch"]
    graph["edges"][0]["branch"] = "true"
    graph["edges"][3]["branch"] = "maybe"
    errors = errors_of(graph)
    fields = {(e["node_id"], e["field"]) for e in errors}
    assert fields == {
        ("check", "edges[2].branch"),
        ("t", "edges[0].branch"),
        ("check", "edges[3].branch"),
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("timeout_seconds", 0),
        ("timeout_seconds", -1),
        ("timeout_seconds", "10"),
        ("cache_ttl_seconds", -1),
        ("cache_ttl_seconds", True),
        ("on_error", "retry"),
        ("retry", {"max_attempts": 1.5}),
        ("retry", {"backoff_seconds": -1}),
        ("retry", {"backoff_factor": 0.5}),
        ("retry", {"max_backoff_seconds": -2}),
        ("retry", {"max_attempts": 2, "jitter": True}),
        ("retry", [1]),
    ],
)
def test_per_node_options_are_checked(field, value):
    graph = good_graph()
    graph["nodes"][3][field] = value
    errors = errors_of(graph)
    assert len(errors) == 1
    assert errors[0]["node_id"] == "log"
    assert errors[0]["field"].startswith(field)


def test_settings_timeout_must_be_positive_and_unknown_keys_refused():
    graph = good_graph()
    graph["settings"] = {"timeout_seconds": 0, "colour": "red"}
    errors = errors_of(graph)
    assert {e["field"] for e in errors} == {"settings.timeout_seconds", "settings.colour"}


def test_params_templates_tolerated_but_literals_checked():
    graph = good_graph()
    graph["nodes"].append(
        {"id": "wait", "type": "delay", "params": {"seconds": "{{ input.wait }}"}}
    )
    graph["edges"].append({"source": "log", "target": "wait"})
    validate_graph(graph, credentials=CREDENTIALS)

    graph["nodes"][-1]["params"] = {"seconds": -5}
    errors = errors_of(graph)
    assert errors[0]["node_id"] == "wait"
    assert errors[0]["field"] == "params.seconds"


def test_missing_required_param():
    graph = good_graph()
    graph["nodes"][2]["params"] = {}
    errors = errors_of(graph)
    assert errors == [
        {"node_id": "check", "field": "params.expression", "message": "Field required"}
    ]


def test_trigger_params_refuse_templates_and_bad_cron():
    graph = good_graph()
    graph["nodes"][0]["params"] = {
        "mode": "schedule",
        "cron": "61 * * * *",
        "timezone": "Mars/Base",
    }
    fields = {e["field"] for e in errors_of(graph)}
    assert fields == {"params.cron", "params.timezone"}
    graph["nodes"][0]["params"] = {"mode": "{{ input.mode }}"}
    assert errors_of(graph)[0]["field"] == "params.mode"


def add_email(graph: dict[str, Any], credential: Any) -> dict[str, Any]:
    graph["nodes"].append(
        {
            "id": "mail",
            "type": "email",
            "params": {
                "credential": credential,
                "to": ["a@example.org"],
                "subject": "hi",
                "text": "x",
            },
        }
    )
    graph["edges"].append({"source": "log", "target": "mail"})
    return graph


def test_credential_null_or_own_of_the_right_type():
    validate_graph(add_email(good_graph(), None), credentials=CREDENTIALS)
    validate_graph(add_email(good_graph(), SMTP_ID), credentials=CREDENTIALS)
    wrong_type = errors_of(add_email(good_graph(), BEARER_ID))
    assert wrong_type[0]["field"] == "params.credential"
    assert "http_bearer" in wrong_type[0]["message"]


def test_someone_elses_credential_reads_like_a_missing_one():
    others = "33333333-3333-3333-3333-333333333333"
    missing = "44444444-4444-4444-4444-444444444444"
    other_error = errors_of(add_email(good_graph(), others))[0]["message"]
    missing_error = errors_of(add_email(good_graph(), missing))[0]["message"]
    assert other_error.replace(others, "ID") == missing_error.replace(missing, "ID")


def test_templated_credential_is_refused():
    errors = errors_of(add_email(good_graph(), "{{ input.credential }}"))
    assert errors[0]["field"] == "params.credential"


def test_size_limits():
    graph = good_graph()
    assert errors_of(graph, max_nodes=4)[0]["field"] == "nodes"
    assert errors_of(graph, max_bytes=100)[0]["field"] == "graph"


def test_size_limits_default_from_settings(settings):
    settings.GRAPH_MAX_NODES = 3
    assert "limit is 3" in errors_of(good_graph())[0]["message"]


def test_graph_must_be_json():
    graph = good_graph()
    graph["nodes"][3]["params"]["message"] = float("nan")
    assert errors_of(graph)[0]["field"] == "graph"


def test_parse_fills_defaults_and_indexes():
    parsed = parse_graph(good_graph())
    assert parsed.trigger_id == "t"
    assert parsed.order == ("t", "get", "check", "log", "shape")
    assert parsed.leaves == ("log", "shape")
    assert parsed.parents["check"] == ("get",)
    assert parsed.children["check"] == ("log", "shape")
    assert [e.branch for e in parsed.incoming["log"]] == ["true"]
    assert parsed.nodes["get"].retry == RetryPolicy(3, 1.0, 2.0, 60.0)
    assert parsed.nodes["log"].retry.max_attempts == 1
    assert parsed.nodes["log"].on_error == "stop"
    assert parsed.nodes["log"].timeout_seconds > 0
    assert parsed.settings.timeout_seconds == 3600
    assert parsed.ancestors("log") == {"t", "get", "check"}
    assert parsed.descendants("get") == {"check", "log", "shape"}
    with pytest.raises(TypeError):
        parsed.nodes["log"].params["message"] = "changed"  # type: ignore[index]


def test_parse_order_is_stable_and_respects_dependencies():
    graph = {
        "nodes": [
            {"id": "z", "type": "debug"},
            {"id": "t", "type": "trigger"},
            {"id": "b", "type": "debug"},
            {"id": "a", "type": "debug"},
        ],
        "edges": [
            {"source": "t", "target": "b"},
            {"source": "t", "target": "a"},
            {"source": "a", "target": "z"},
            {"source": "b", "target": "z"},
        ],
    }
    assert parse_graph(graph).order == ("t", "b", "a", "z")


def test_parse_refuses_a_broken_structure():
    graph = good_graph()
    graph["edges"].append({"source": "shape", "target": "get"})
    with pytest.raises(GraphInvalid):
        parse_graph(graph)


def test_retry_backoff_grows_and_caps():
    policy = RetryPolicy(max_attempts=5, backoff_seconds=1, backoff_factor=3, max_backoff_seconds=5)
    assert [policy.delay_before(n) for n in (2, 3, 4, 5)] == [1, 3, 5, 5]


def test_parse_of_a_long_chain_is_fast():
    count = 500
    graph = {
        "nodes": [{"id": "n0", "type": "trigger"}]
        + [{"id": f"n{i}", "type": "debug"} for i in range(1, count)],
        "edges": [{"source": f"n{i}", "target": f"n{i + 1}"} for i in range(count - 1)],
    }
    validate_graph(graph, credentials={})
    parsed = parse_graph(graph)
    assert parsed.order == tuple(f"n{i}" for i in range(count))


# --- property: any input either validates or raises GraphInvalid, never anything else ---

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 5), st.text(max_size=6))
_types = st.sampled_from(["trigger", "debug", "condition", "transform", "delay", "http", "nope", 3])
_ids = st.sampled_from(["a", "b", "c", "d", "", 7])
_nodes = st.fixed_dictionaries(
    {"id": _ids, "type": _types},
    optional={
        "params": st.one_of(
            st.dictionaries(
                st.sampled_from(["message", "expression", "seconds", "fields", "mode"]),
                _scalars,
                max_size=3,
            ),
            _scalars,
        ),
        "retry": st.one_of(
            st.dictionaries(st.sampled_from(["max_attempts", "backoff_factor"]), _scalars), _scalars
        ),
        "timeout_seconds": _scalars,
        "on_error": st.sampled_from(["stop", "continue", "x"]),
    },
)
_edges = st.fixed_dictionaries(
    {"source": _ids, "target": _ids},
    optional={"branch": st.sampled_from(["true", "false", "x", None])},
)
_graphs = st.one_of(
    st.fixed_dictionaries(
        {"nodes": st.lists(_nodes, max_size=6), "edges": st.lists(_edges, max_size=8)}
    ),
    _scalars,
    st.fixed_dictionaries({"nodes": _scalars, "edges": st.lists(_scalars, max_size=2)}),
)


@settings(max_examples=300, deadline=None)
@given(graph=_graphs)
def test_random_graphs_validate_or_raise_graph_invalid(graph):
    try:
        validate_graph(copy.deepcopy(graph), credentials=CREDENTIALS)
    except GraphInvalid as error:
        problems = error.details["errors"]
    else:
        problems = []
    assert all(set(problem) == {"node_id", "field", "message"} for problem in problems)
    if problems:
        return
    parsed = parse_graph(graph)
    assert set(parsed.order) == set(parsed.nodes)
