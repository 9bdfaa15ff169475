"""The garbage collector's settings for a long-running web process.

Under ASGI a Django request ends in reference cycles (the handler cancels its disconnect
listener, and the exception's traceback holds the request's frames), so its objects are freed
by the cycle collector, not by reference counting: ~140 tracked objects per webhook call. With
Python's default thresholds (700, 10, 10) that was a young collection every few requests and,
under W1 at concurrency 16, a full one every few seconds that walked the ~160,000 objects
importing the application leaves (Django, the apps and their models, the middleware,
Channels' routing) for 140-160 ms with the GIL held: ~1 s of collection in ~25 s of W1 load,
where these settings leave ~0.35 s. The threshold costs memory, garbage waiting longer for its
collection: ~40 MiB more at the web process's peak under the API benchmark (155 -> 196 MiB).
"""

from __future__ import annotations

import gc

# Young objects allocated (less those freed) before a collection: Python's default is 700.
YOUNG_GENERATION_THRESHOLD = 10_000


def tune_for_serving() -> None:
    """Move what start-up allocated out of the collector's reach; collect the young less often.

    Call once the application is loaded: frozen objects are never scanned again (and never
    freed by the collector, which start-up's modules, classes and caches never need).
    """
    gc.freeze()
    _, middle, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, middle, oldest)
