"""Password checks with bounded memory: argon2 needs about 64 MiB for each check running, and the threaded server
starts a thread per connection, so without a bound N parallel sign-ins cost N x 64 MiB. A process-wide semaphore
lets `slots` checks run at once (the `signin_checks` setting); the others wait up to `wait_s` and are then turned
away with a retry delay instead of piling up.

Each check is logged (`password checked`, with how many were running in this process, which process, when it
started and how long it took), which is how an operator, and the tests, can see how many argon2 verifications a
burst of sign-ins really cost and that no two overlapped, across all server processes.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

import structlog

log = structlog.get_logger("pypi_pulse.dashboard.password_checks")


class Busy(Exception):
    """No check slot came free in time."""


class PasswordChecks:
    def __init__(self, verify: Callable[[str, str], bool], slots: int, wait_s: float):
        self._verify = verify
        self._slots = threading.BoundedSemaphore(slots)
        self.wait_s = wait_s
        self._lock = threading.Lock()
        self.running = 0
        self.peak = 0
        self.done = 0

    def check(self, user: str, password: str, client: str) -> bool:
        if not self._slots.acquire(timeout=self.wait_s):
            raise Busy(f"no password-check slot free within {self.wait_s:g} s")
        try:
            with self._lock:
                self.running += 1
                self.peak = max(self.peak, self.running)
                running = self.running
            started = time.time()
            ok = self._verify(user, password)
            log.info(
                "password checked",
                user=user,
                client=client,
                ok=ok,
                running=running,
                pid=os.getpid(),
                started=started,
                seconds=time.time() - started,
            )
            return ok
        finally:
            with self._lock:
                self.running -= 1
                self.done += 1
            self._slots.release()
