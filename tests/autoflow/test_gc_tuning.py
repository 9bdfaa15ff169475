"""The web process's collector settings."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from autoflow.gc_tuning import YOUNG_GENERATION_THRESHOLD, tune_for_serving


@pytest.fixture
def collector_restored() -> Iterator[None]:
    threshold = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*threshold)


def test_tuning_freezes_what_exists_and_collects_the_young_less_often(collector_restored):
    gc.unfreeze()
    gc.set_threshold(700, 10, 10)
    kept = [["built at start-up"]]
    assert any(item is kept[0] for item in gc.get_objects())

    tune_for_serving()

    assert gc.get_threshold() == (YOUNG_GENERATION_THRESHOLD, 10, 10)
    assert not any(item is kept[0] for item in gc.get_objects())  # frozen: out of every scan
    made_later = ["built per request"]
    assert any(item is made_later for item in gc.get_objects())
