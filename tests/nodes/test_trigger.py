"""The trigger node: modes, webhook options, cron and time zone checks; output is the input."""

from __future__ import annotations

import pytest

from nodes.params import check_params_for_save, params_for_run
from nodes.registry import get_node_class
from tests.nodes.helpers import run_node

_found = get_node_class("trigger")
assert _found is not None
TRIGGER = _found


def test_output_is_the_execution_input():
    assert run_node("trigger", {"mode": "manual"}, input={"a": 1}).output == {"a": 1}


def test_webhook_defaults():
    params = params_for_run(TRIGGER, {"mode": "webhook"})
    assert params.methods == ["POST"]  # type: ignore[attr-defined]
    assert params.respond == "immediately"  # type: ignore[attr-defined]
    assert params.secret is None  # type: ignore[attr-defined]


def test_methods_are_normalised():
    params = params_for_run(TRIGGER, {"mode": "webhook", "methods": ["get", "POST", "post"]})
    assert params.methods == ["GET", "POST"]  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"mode": "cron"}, "mode"),
        ({"mode": "webhook", "methods": ["TRACE"]}, "methods[0]"),
        ({"mode": "webhook", "methods": []}, "methods"),
        ({"mode": "webhook", "respond": "later"}, "respond"),
        ({"mode": "webhook", "secret": "short"}, "secret"),
        ({"mode": "schedule"}, ""),
        ({"mode": "schedule", "cron": "* * * *"}, "cron"),
        ({"mode": "schedule", "cron": "* * * * * *"}, "cron"),
        ({"mode": "schedule", "cron": "0 25 * * *"}, "cron"),
        ({"mode": "schedule", "cron": "0 9 * * 1", "timezone": "Europe/Nowhere"}, "timezone"),
        ({"mode": "manual", "extra": 1}, "extra"),
    ],
)
def test_invalid_params(params, field):
    problems = check_params_for_save(TRIGGER, params)
    assert [f for f, _message in problems] == [field]


def test_valid_schedule():
    assert (
        check_params_for_save(
            TRIGGER,
            {"mode": "schedule", "cron": "*/5 9-17 * * mon-fri", "timezone": "Europe/Paris"},
        )
        == []
    )
