"""Publish N no-op tasks for B2 from a separate process; records the first publish time."""

from __future__ import annotations

import sys
import time

from bench.noop_celery import COUNTER_KEY, _counter, app, noop

START_KEY = "bench:b2:start"


def main(count: int) -> None:
    _counter.delete(COUNTER_KEY)
    with app.producer_or_acquire() as producer:
        _counter.set(START_KEY, repr(time.time()))
        for _ in range(count):
            noop.apply_async(producer=producer)


if __name__ == "__main__":
    main(int(sys.argv[1]))
