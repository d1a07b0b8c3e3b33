"""Slowing down password guessing: after a few failed sign-ins, a client (and a user name) must wait before trying
again, doubling each time.

Keyed by both the client address and the user name, so that one address cannot guess many names quickly and many
addresses cannot guess one name quickly. The server never sleeps (a sleeping worker would let an attacker tie up
threads); it refuses early attempts with the number of seconds to wait.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass


@dataclass
class _Record:
    failures: int = 0
    blocked_until: float = 0.0
    last: float = 0.0


class SignInThrottle:
    def __init__(self, free_attempts: int = 3, base_delay_s: float = 1.0, max_delay_s: float = 300.0,
                 forget_after_s: float = 900.0, clock=time.monotonic):
        self.free_attempts = free_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.clock = clock
        self._records: dict[str, _Record] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, *keys: str) -> float:
        """How long the caller must still wait before an attempt for these keys is considered (0: go ahead)."""
        now = self.clock()
        with self._lock:
            waits = [r.blocked_until - now for k in keys if (r := self._records.get(k)) is not None]
        return max([0.0, *waits])

    def failed(self, *keys: str) -> None:
        now = self.clock()
        with self._lock:
            self._expire(now)
            for k in keys:
                r = self._records.setdefault(k, _Record())
                r.failures += 1
                r.last = now
                extra = r.failures - self.free_attempts
                if extra >= 0:
                    r.blocked_until = now + min(self.max_delay_s, self.base_delay_s * 2 ** extra)

    def succeeded(self, *keys: str) -> None:
        with self._lock:
            for k in keys:
                self._records.pop(k, None)

    def _expire(self, now: float) -> None:
        if len(self._records) > 10_000 or any(now - r.last > self.forget_after_s for r in self._records.values()):
            self._records = {k: r for k, r in self._records.items()
                             if now - r.last <= self.forget_after_s or r.blocked_until > now}
