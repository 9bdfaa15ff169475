"""One lease-keeping thread per process renews every run it holds, on time, and only then."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from executions.leases import LeaseKeeper


class Run:
    def __init__(self, fail_first: bool = False) -> None:
        self.beats: list[float] = []
        self.fail_first = fail_first

    def heartbeat(self) -> None:
        self.beats.append(time.monotonic())
        if self.fail_first and len(self.beats) == 1:
            raise RuntimeError("a database blip")


def _keepers() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "autoflow-lease"]


def _wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)


def test_held_runs_are_renewed_every_interval_and_not_after_they_end():
    keeper = LeaseKeeper()
    slow, fast = Run(), Run()
    started = time.monotonic()
    with keeper.holding(slow, 0.4), keeper.holding(fast, 0.1):
        _wait_for(lambda: len(slow.beats) >= 2)
    ended = time.monotonic()
    assert len(slow.beats) >= 2
    assert len(fast.beats) >= 6  # renewed on its own schedule, not the slow run's
    assert slow.beats[0] - started >= 0.39  # the first renewal is one interval in
    assert all(b - a >= 0.09 for a, b in zip(fast.beats, fast.beats[1:], strict=False))
    counts = (len(slow.beats), len(fast.beats))
    time.sleep(0.5)
    assert (len(slow.beats), len(fast.beats)) == counts
    assert max(slow.beats + fast.beats) <= ended + 0.05
    assert keeper.held() == 0


def test_many_runs_share_one_thread_and_a_failed_renewal_is_retried():
    before = len(_keepers())
    keeper = LeaseKeeper()
    for _ in range(20):
        with keeper.holding(Run(), 10.0):
            assert keeper.held() == 1
    assert len(_keepers()) == before + 1
    flaky = Run(fail_first=True)
    with keeper.holding(flaky, 0.05):
        _wait_for(lambda: len(flaky.beats) >= 2)
    assert len(flaky.beats) >= 2
    assert len(_keepers()) == before + 1
