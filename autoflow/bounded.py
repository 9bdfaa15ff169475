"""`BoundedCache`: the one shape of every per-process cache here (plans, version ids, verified
tokens, known rate counters, live webhooks): a dict that holds at most `size` entries and drops
the oldest first, safe to share between threads."""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class BoundedCache(Generic[K, V]):
    """At most `size` entries, the oldest written dropped first.

    Reads take no lock (a dict lookup is atomic under the GIL); writes do, so two threads
    evicting at once cannot both drop an entry or iterate a dict the other is changing.
    """

    def __init__(self, size: int) -> None:
        self.size = size
        self._entries: dict[K, V] = {}
        self._lock = threading.Lock()

    def get(self, key: K) -> V | None:
        return self._entries.get(key)

    def put(self, key: K, value: V) -> None:
        with self._lock:
            if key not in self._entries and len(self._entries) >= self.size:
                del self._entries[next(iter(self._entries))]
            self._entries[key] = value

    def discard(self, key: K) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)
