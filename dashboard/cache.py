"""A time-bucketed cache so that many viewers cost one query per refresh period.

Every viewer of the Live tab asks for the same data each second. The first request of a period computes it; the
others arriving in the same period get that result, and those arriving while it is being computed wait for it
instead of running the query again (one lock per key).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Any


class PeriodCache:
    def __init__(self, period_s: float = 1.0, max_keys: int = 512, clock: Callable[[], float] = time.monotonic):
        self.period_s = period_s
        self.max_keys = max_keys
        self.clock = clock
        self._values: dict[Hashable, tuple[int, Any]] = {}
        self._locks: dict[Hashable, threading.Lock] = {}
        self._guard = threading.Lock()
        self.computed = 0  # how many times a value was actually computed (for tests and benchmarks)

    def get(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        bucket = int(self.clock() // self.period_s)
        hit = self._values.get(key)
        if hit is not None and hit[0] == bucket:
            return hit[1]
        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            hit = self._values.get(key)
            bucket = int(self.clock() // self.period_s)
            if hit is not None and hit[0] == bucket:
                return hit[1]
            value = compute()
            self.computed += 1
            with self._guard:
                if len(self._values) >= self.max_keys:  # keys carry the newest second: drop the old ones
                    self._values.clear()
                    self._locks = {k: v for k, v in self._locks.items() if k == key}
                self._values[key] = (bucket, value)
            return value
