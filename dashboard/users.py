"""Dashboard accounts: argon2 password hashes and API tokens in one JSON file in the data directory.

Why a file and not the sink: the dashboard opens the sink read-only (it may be a PostgreSQL replica, and the sink is
pruned and rebuilt from Kafka by design), while accounts are long-lived secrets owned by whoever runs the server.
A 0600 file next to the session secret keeps all credentials in one place that a backup or `rm -r` treats alike.

Passwords are stored only as argon2id hashes. API tokens are 256-bit random strings, so a SHA-256 of the token is
enough to store them safely (no dictionary to attack) and lets every API request be checked in microseconds.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from pypi_pulse.errors import UserError

USERS_FILE = "users.json"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "ppt_"

_hasher = PasswordHasher()
# A fixed hash verified when the user does not exist, so that a wrong name costs as much time as a wrong password.
_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


def generate_password() -> str:
    return secrets.token_urlsafe(15)


def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserStore:
    """Reads the file on each check (it is tiny) so that `pypi-pulse users ...` takes effect without a restart."""

    def __init__(self, data_dir: Path):
        self.path = Path(data_dir) / USERS_FILE
        self._lock = threading.Lock()

    # ---- persistence ----------------------------------------------------------------------------------------
    def _load(self) -> dict:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {"users": {}}
        except (OSError, ValueError) as exc:
            raise UserError(f"cannot read {self.path} ({exc}): fix or delete it and add users again") from None
        data.setdefault("users", {})
        return data

    def _save(self, data: dict) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".users-")
            with os.fdopen(fd, "w") as f:
                json.dump(data, f, indent=1, sort_keys=True)
            os.chmod(tmp, 0o600)
            os.replace(tmp, self.path)
        except OSError as exc:
            raise UserError(f"cannot write {self.path} ({exc}): check --data-dir permissions") from None

    # ---- management -----------------------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._load()["users"])

    def describe(self) -> list[dict]:
        users = self._load()["users"]
        return [
            {"name": n, "created": u.get("created"), "tokens": len(u.get("tokens", []))}
            for n, u in sorted(users.items())
        ]

    def add(self, name: str, password: str) -> None:
        if not NAME_RE.match(name):
            raise UserError(f"invalid user name {name!r}: use 1-64 letters, digits, '.', '_', '@' or '-'")
        if len(password) < MIN_PASSWORD:
            raise UserError(f"password too short: use at least {MIN_PASSWORD} characters")
        with self._lock:
            data = self._load()
            if name in data["users"]:
                raise UserError(f"user {name!r} already exists: remove it first (`pypi-pulse users remove {name}`)")
            data["users"][name] = {"hash": _hasher.hash(password), "created": int(time.time()), "tokens": []}
            self._save(data)

    def remove(self, name: str) -> None:
        with self._lock:
            data = self._load()
            if data["users"].pop(name, None) is None:
                raise UserError(f"no user {name!r}: see `pypi-pulse users list`")
            self._save(data)

    def new_token(self, name: str) -> str:
        """A fresh API token for `name`; only its digest is stored, so it is shown once."""
        with self._lock:
            data = self._load()
            user = data["users"].get(name)
            if user is None:
                raise UserError(f"no user {name!r}: add it with `pypi-pulse users add {name} --password-stdin`")
            token = TOKEN_PREFIX + secrets.token_urlsafe(32)
            user.setdefault("tokens", []).append({"sha256": _token_digest(token), "created": int(time.time())})
            self._save(data)
        return token

    # ---- checks ---------------------------------------------------------------------------------------------
    def verify_password(self, name: str, password: str) -> bool:
        user = self._load()["users"].get(name)
        try:
            return _hasher.verify(user["hash"] if user else _DUMMY_HASH, password) and user is not None
        except (VerificationError, InvalidHashError):
            return False

    def user_for_token(self, token: str) -> Optional[str]:
        if not token.startswith(TOKEN_PREFIX):
            return None
        digest = _token_digest(token)
        for name, user in self._load()["users"].items():
            for t in user.get("tokens", []):
                if hmac.compare_digest(t["sha256"], digest):
                    return name
        return None

    def exists(self, name: str) -> bool:
        return name in self._load()["users"]
