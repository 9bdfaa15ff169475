"""The condition node picks a branch by the truthiness of its expression."""

from __future__ import annotations

import pytest

from tests.nodes.helpers import run_node


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("{{ input.n > 1 }}", True),
        ("{{ input.n > 5 }}", False),
        ("{{ input.items }}", True),
        ("{{ input.empty }}", False),
        ("{{ input.n }}", True),
        ("{{ 0 }}", False),
        ("{{ none }}", False),
        ("n is {{ input.n }}", True),
        ("{{ input.n > 5 }} ", False),
        ("false", False),
        ("  FALSE ", False),
        ("0", False),
        ("", False),
        (True, True),
        (0, False),
    ],
)
def test_branch_follows_truthiness(expression, expected):
    result = run_node(
        "condition", {"expression": expression}, input={"n": 2, "items": [1], "empty": []}
    )
    assert result.output == {"result": expected}
    assert result.branch == ("true" if expected else "false")
