"""Server-side sign-in sessions, so that signing out ends a session for good.

The session cookie is signed but held by the browser: clearing it on sign-out does nothing against a copy taken
earlier. Each sign-in therefore gets a random id recorded here, the cookie carries the id, and every request checks
that the id is still live; sign-out and expiry delete it. The record lives in SQLite in the data directory (not in
process memory) so that several server processes on one data directory see the same sessions.
"""

from __future__ import annotations

import secrets
import sqlite3
import threading
import time
from pathlib import Path

from pypi_pulse.errors import UserError

SESSIONS_FILE = "sessions.db"


def connect_shared(path: Path, patience_s: float = 10.0) -> sqlite3.Connection:
    """A connection to a small database that every server process writes (sessions, sign-in throttle), in WAL mode
    so that readers in other processes go on while one writes. Workers started together all switch a new file to
    WAL at once, and SQLite refuses that switch with "database is locked" without waiting: retried meanwhile."""
    db = sqlite3.connect(path, timeout=patience_s, isolation_level=None)
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            break
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                db.close()
                raise
            time.sleep(0.01)  # the other process holds the lock for a moment: nothing to poll but the lock itself
    db.execute("PRAGMA synchronous=NORMAL")
    return db


class SessionStore:
    def __init__(self, data_dir: Path, lifetime_s: float, clock=time.time):
        self.path = Path(data_dir) / SESSIONS_FILE
        self.lifetime_s = lifetime_s
        self.clock = clock
        self._local = threading.local()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self._db() as db:
                db.execute(
                    "CREATE TABLE IF NOT EXISTS sessions (id TEXT PRIMARY KEY, user TEXT NOT NULL, "
                    "created REAL NOT NULL, expires REAL NOT NULL)"
                )
            self.path.chmod(0o600)
        except (OSError, sqlite3.Error) as exc:
            raise UserError(f"cannot open {self.path} ({exc}): check --data-dir permissions") from None

    def _db(self) -> sqlite3.Connection:
        """One connection per thread (the server is threaded); WAL lets readers and a writer in other processes go on."""
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = connect_shared(self.path)
        return db

    def create(self, user: str) -> str:
        sid = secrets.token_urlsafe(32)
        now = self.clock()
        db = self._db()
        db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
        db.execute(
            "INSERT INTO sessions (id, user, created, expires) VALUES (?, ?, ?, ?)",
            (sid, user, now, now + self.lifetime_s),
        )
        return sid

    def user_of(self, sid: object) -> str | None:
        """The user of a live session id, else None (unknown, signed out, expired, or not a string)."""
        if not isinstance(sid, str) or not sid:
            return None
        row = (
            self._db()
            .execute("SELECT user FROM sessions WHERE id = ? AND expires >= ?", (sid, self.clock()))
            .fetchone()
        )
        return row[0] if row else None

    def revoke(self, sid: object) -> None:
        if isinstance(sid, str):
            self._db().execute("DELETE FROM sessions WHERE id = ?", (sid,))
