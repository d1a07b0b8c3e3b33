"""Slowing down password guessing without letting an attacker lock the real user out.

After a few failed sign-ins from one address, that address must wait before trying again, doubling each time. A
user name under attack gets the same doubling delay, but it only holds back addresses that have themselves failed
recently: a correct password from a clean address always goes through, so guessing from elsewhere cannot lock the
account's owner out.

At most one password check is in flight per address and per user name: `begin` claims both atomically and refuses
further concurrent attempts at once, before any hashing, so a burst of parallel requests costs one argon2 check,
not one each. The server never sleeps (a sleeping worker would let an attacker tie up threads); it refuses early
attempts with the number of seconds to wait.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Optional

IN_FLIGHT_RETRY_S = 1.0  # what a refused concurrent attempt is told to wait: about one argon2 check


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
        self._in_flight: set[str] = set()
        self._lock = threading.Lock()

    @staticmethod
    def keys(client: str, user: str) -> tuple[str, str]:
        return f"ip:{client}", f"user:{user.casefold()}"

    def begin(self, client: str, user: str) -> float:
        """Claim the one check allowed in flight for this address and this user name: 0.0 when claimed (call
        `end` afterwards), else the seconds to wait before trying again."""
        address, account = self.keys(client, user)
        now = self.clock()
        with self._lock:
            if address in self._in_flight or account in self._in_flight:
                return IN_FLIGHT_RETRY_S
            waits = [0.0]
            if (a := self._records.get(address)) is not None:
                waits.append(a.blocked_until - now)
                if (u := self._records.get(account)) is not None:  # only an address that has failed is held back
                    waits.append(u.blocked_until - now)
            wait = max(waits)
            if wait > 0:
                return wait
            self._in_flight.update((address, account))
            return 0.0

    def end(self, client: str, user: str, ok: Optional[bool]) -> None:
        """Release the claim of `begin` and record the outcome (None: no check ran, nothing to record)."""
        keys = self.keys(client, user)
        if ok is True:
            self.succeeded(*keys)
        elif ok is False:
            self.failed(*keys)
        with self._lock:
            self._in_flight.difference_update(keys)

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
