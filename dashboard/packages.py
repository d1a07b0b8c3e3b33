"""Server-side package search over every known name (800,000+ on PyPI), fast enough to run on each keystroke.

Names are held sorted in memory: prefix matches come from a binary search, and substring matches from `str.find`
over all names joined into one string (C speed, no per-name Python loop). The list is loaded from the sink's
rollups on first use and refreshed in the background, so searching never waits on the database after that.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from typing import Optional

import structlog

from pypi_pulse.names import normalize

log = structlog.get_logger("pypi_pulse.dashboard.packages")


class NameIndex:
    """An immutable search structure over a set of names."""

    def __init__(self, names: Sequence[str]):
        self.names = sorted(set(names))
        self._blob = "\n" + "\n".join(self.names) + "\n"
        self._starts = []  # offset of each name in the blob, to map a find() hit back to its name
        pos = 1
        for n in self.names:
            self._starts.append(pos)
            pos += len(n) + 1

    def __len__(self) -> int:
        return len(self.names)

    def __contains__(self, name: str) -> bool:
        i = bisect.bisect_left(self.names, name)
        return i < len(self.names) and self.names[i] == name

    def search(self, query: str, limit: int = 20) -> list[str]:
        """Exact name first, then names starting with the query (shortest first), then names containing it."""
        q = normalize(query.strip()) if query.strip() else ""
        if not q or "\n" in q:
            return []
        out: list[str] = []
        seen: set[str] = set()
        i = bisect.bisect_left(self.names, q)
        prefixed: list[str] = []
        while i < len(self.names) and self.names[i].startswith(q) and len(prefixed) < 200:
            prefixed.append(self.names[i])
            i += 1
        for n in sorted(prefixed, key=lambda n: (len(n), n)):
            if len(out) >= limit:
                return out
            out.append(n)
            seen.add(n)
        pos = 0
        blob = self._blob
        while len(out) < limit:
            hit = blob.find(q, pos)
            if hit < 0:
                break
            j = bisect.bisect_right(self._starts, hit) - 1
            n = self.names[j]
            if n not in seen:
                out.append(n)
                seen.add(n)
            pos = self._starts[j] + len(n) + 1
        return out


class PackageIndex:
    """The NameIndex of the sink's packages, reloaded every `refresh_s` seconds in a background thread."""

    def __init__(self, load: Callable[[], Sequence[str]], refresh_s: float = 600.0):
        self._load = load
        self.refresh_s = refresh_s
        self._index: Optional[NameIndex] = None
        self._loaded_at = 0.0
        self._lock = threading.Lock()
        self._refreshing = False

    def index(self) -> NameIndex:
        if self._index is None:
            with self._lock:
                if self._index is None:
                    self._index = NameIndex(self._load())
                    self._loaded_at = time.monotonic()
        elif (
            time.monotonic() - self._loaded_at > (self.refresh_s if len(self._index) else 5.0) and not self._refreshing
        ):
            self._refreshing = True
            threading.Thread(target=self._reload, name="package-index", daemon=True).start()
        return self._index

    def _reload(self) -> None:
        try:
            self._index = NameIndex(self._load())
        except Exception:
            log.warning("package list reload failed; keeping the old one", exc_info=True)
        finally:
            self._loaded_at = time.monotonic()
            self._refreshing = False

    def search(self, query: str, limit: int = 20) -> list[str]:
        return self.index().search(query, limit)
