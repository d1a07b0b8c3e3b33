"""Slowing down password guessing without letting an attacker lock the real user out.

After a few failed sign-ins from one address, that address must wait before trying again, doubling each time. A
user name under attack gets the same doubling delay, but it only holds back addresses that have themselves failed
recently: a correct password from a clean address always goes through, so guessing from elsewhere cannot lock the
account's owner out.

At most one password check is in flight per address and per user name: `begin` claims both atomically and refuses
further concurrent attempts at once, before any hashing, so a burst of parallel requests costs one argon2 check,
not one each. The server never sleeps (a sleeping worker would let an attacker tie up threads); it refuses early
attempts with the number of seconds to wait.

The state lives in SQLite beside the sessions (DATA_DIR/signin.db), not in process memory, because `serve` runs
several worker processes and an attacker's requests are spread over all of them: a claim taken in one process must
hold in the others. Claims and records change in `BEGIN IMMEDIATE` transactions (one writer at a time, across
processes), and a claim carries an expiry, so the claims of a process killed mid-check lapse by themselves.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from pypi_pulse.dashboard.sessions import connect_shared
from pypi_pulse.errors import UserError

IN_FLIGHT_RETRY_S = 1.0  # what a refused concurrent attempt is told to wait: about one argon2 check
THROTTLE_FILE = "signin.db"
_MAX_RECORDS = 10_000  # beyond this many remembered keys, forgotten ones are deleted at once

_SCHEMA = """
CREATE TABLE IF NOT EXISTS claims (key TEXT PRIMARY KEY, owner TEXT NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS records (key TEXT PRIMARY KEY, failures INTEGER NOT NULL, blocked_until REAL NOT NULL,
                                    last REAL NOT NULL);
"""


class SignInThrottle:
    def __init__(
        self,
        path: Path,
        free_attempts: int = 3,
        base_delay_s: float = 1.0,
        max_delay_s: float = 300.0,
        forget_after_s: float = 900.0,
        claim_s: float = 30.0,
        clock=time.time,
    ):
        self.path = Path(path)
        self.free_attempts = free_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.forget_after_s = forget_after_s
        self.claim_s = claim_s
        self.clock = clock  # wall time: shared by every process on the machine
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db().executescript(_SCHEMA)
            self.path.chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open {self.path} ({exc}): check --data-dir permissions") from None

    def _db(self) -> sqlite3.Connection:
        """One connection per thread; WAL lets the other processes read while one writes."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect_shared(self.path)
        return db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        db = self._db()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @staticmethod
    def keys(client: str, user: str) -> tuple[str, str]:
        return f"ip:{client}", f"user:{user.casefold()}"

    def begin(self, client: str, user: str) -> float:
        """Claim the one check allowed in flight for this address and this user name: 0.0 when claimed (call
        `end` afterwards, from the same thread), else the seconds to wait before trying again."""
        address, account = self.keys(client, user)
        now = self.clock()
        with self._write() as db:
            db.execute("DELETE FROM claims WHERE expires < ?", (now,))
            if db.execute("SELECT 1 FROM claims WHERE key IN (?, ?)", (address, account)).fetchone():
                return IN_FLIGHT_RETRY_S
            blocked = dict(
                db.execute("SELECT key, blocked_until FROM records WHERE key IN (?, ?)", (address, account)).fetchall()
            )
            waits = [0.0]
            if address in blocked:  # only an address that has failed is held back by its user name's delay
                waits += [blocked[address] - now, blocked.get(account, now) - now]
            wait = max(waits)
            if wait > 0:
                return wait
            owner = secrets.token_hex(8)
            db.executemany(
                "INSERT INTO claims (key, owner, expires) VALUES (?, ?, ?)",
                [(address, owner, now + self.claim_s), (account, owner, now + self.claim_s)],
            )
            self._local.owner = owner
            return 0.0

    def end(self, client: str, user: str, ok: Optional[bool]) -> None:
        """Release the claim of `begin` and record the outcome (None: no check ran, nothing to record)."""
        keys = self.keys(client, user)
        owner = getattr(self._local, "owner", None)
        self._local.owner = None
        with self._write() as db:
            if ok is True:
                self._succeeded(db, keys)
            elif ok is False:
                self._failed(db, keys)
            db.executemany("DELETE FROM claims WHERE key = ? AND owner = ?", [(k, owner) for k in keys])

    def failed(self, *keys: str) -> None:
        with self._write() as db:
            self._failed(db, keys)

    def succeeded(self, *keys: str) -> None:
        with self._write() as db:
            self._succeeded(db, keys)

    def _failed(self, db: sqlite3.Connection, keys) -> None:
        now = self.clock()
        self._expire(db, now)
        for k in keys:
            row = db.execute("SELECT failures, blocked_until FROM records WHERE key = ?", (k,)).fetchone()
            failures, blocked_until = (row[0] + 1, row[1]) if row else (1, 0.0)
            extra = failures - self.free_attempts
            if extra >= 0:
                blocked_until = now + min(self.max_delay_s, self.base_delay_s * 2**extra)
            db.execute(
                "INSERT OR REPLACE INTO records (key, failures, blocked_until, last) VALUES (?, ?, ?, ?)",
                (k, failures, blocked_until, now),
            )

    @staticmethod
    def _succeeded(db: sqlite3.Connection, keys) -> None:
        db.executemany("DELETE FROM records WHERE key = ?", [(k,) for k in keys])

    def _expire(self, db: sqlite3.Connection, now: float) -> None:
        stale = "last < ? AND blocked_until <= ?"
        if (
            db.execute(f"SELECT 1 FROM records WHERE {stale} LIMIT 1", (now - self.forget_after_s, now)).fetchone()
            or db.execute("SELECT count(*) FROM records").fetchone()[0] > _MAX_RECORDS
        ):
            db.execute(f"DELETE FROM records WHERE {stale}", (now - self.forget_after_s, now))
