"""Every project's `overall` and `with_mirrors` downloads per day, held in memory by a history reader.

Most history questions about one package, or a few, ask for these two dimensions over long periods (a trend, the
pypistats `overall` endpoint, a category's top packages, recent downloads). Read from the Parquet files they cost
one row group of every day file per question, however few rows they return: some 150 ms over 180 days. The
history's files never change once written, so each file's series are read once, when a question first needs its
day, and kept until the file goes (a compaction, a backfill, retention), as compact arrays: a project id and a
count per row. 15,000 projects x 180 days take 41 MiB, read in 2 s (6 s on a loaded 2-core machine) by the first
question over the whole history. Memory grows with projects x days (PyPI's ~600,000 daily projects would take
some 1.6 GB for 180 days, in each reader), so the files held are bounded by a budget in bytes (setting
`history_series_mib`), spent on the newest days, which most questions ask about: a file is read only when it
would be kept, a day newer than those held pushes the oldest out, and a question about a day not held is
answered from the files, as for a file not held for any other reason.

The series are exactly the `daily` relation's rows of those dimensions (the day file alone when there is one,
else its blocks summed per key), so every answer equals the SQL one. A file whose rows of these dimensions carry a
category (none of ours do: they have none) is not kept, and questions about its day go to the files.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable
from typing import Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

_INT32_MAX = 2**31 - 1
_FILES_PER_READ = 20  # files per read: bounds the rows in memory at once
_NAME_BYTES = 64  # a name's place in `ids` (dict entry and index), `names` and `_known` (offset), besides its text

# (project ids ascending, their downloads) of one dimension and day
Series = tuple[np.ndarray, np.ndarray]


class SeriesIndex:
    """The series of each file the history reader lists, keyed by the file's version (day, name, size, mtime);
    a day's series are its day file's, else the sum of its blocks'. `load` reads the files a question needs (the
    caller holds the reader's lock), newest day first, as far as `budget` bytes of series and project names go (0:
    none held)."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.ids: dict[str, int] = {}
        self.names: list[str] = []
        self._known = pa.array([], pa.string())  # `names` as an Arrow array, for vectorised lookups
        self._files: dict[tuple, Optional[dict[str, Series]]] = {}  # file version -> its series (None: not held)
        self._days: dict[str, list[tuple]] = {}  # day -> the versions of the files a reader takes for it
        self._sizes: dict[tuple, int] = {}  # file version -> bytes of its series, once read (held or not)
        self.held_bytes = 0  # the held files' arrays
        self.names_bytes = 0  # the project names (`ids`, `names`, `_known`), kept while the reader runs

    def forget(self, days: dict[str, list[tuple]]) -> None:
        """Keep only the files of the current listing (`days`: each day -> its files' versions)."""
        self._days = days
        live = {v for versions in days.values() for v in versions}
        self._files = {v: s for v, s in self._files.items() if v in live}
        self._sizes = {v: n for v, n in self._sizes.items() if v in live}
        self.held_bytes = sum(self._sizes[v] for v, s in self._files.items() if s is not None)

    def load(self, days: list[str], read: Callable[[list[tuple]], Iterable[tuple[tuple, pa.Table]]]) -> None:
        """Read the series of the files of `days` not held yet that the budget keeps: `read(versions)` yields
        (version, rows) with the rows' project, dimension, category and downloads of those dimensions. A file is
        read only when its series (its size as last read, else the mean file's) fit beside those of the days not
        older than its own; the oldest days held give way to it."""
        if self.budget <= 0:
            return
        todo = sorted(
            {v for d in days for v in self._days.get(d, []) if v not in self._files}, key=lambda v: (v[0], v[1])
        )[::-1]
        while todo:
            batch: list[tuple] = []
            for v in todo[:_FILES_PER_READ]:
                if not self._fits(v, batch):
                    break
                batch.append(v)
            if not batch:
                break
            for version, rows in read(batch):
                held = self._series(rows)
                self._files[version] = held
                self._sizes[version] = _nbytes(held)
                self.held_bytes += self._sizes[version]
            self._evict()
            todo = todo[len(batch) :]
        for d in days:  # a day the budget holds only a part of answers nothing: its parts give way
            versions = self._days.get(d, [])
            if any(v not in self._files for v in versions):
                self._drop([v for v in versions if self._files.get(v) is not None])

    def _fits(self, version: tuple, batch: list[tuple]) -> bool:
        known = [n for n in self._sizes.values() if n]
        mean = sum(known) // len(known) if known else 0
        newer = sum(self._sizes[v] for v, s in self._files.items() if s is not None and v[0] >= version[0])
        return self.names_bytes + newer + mean * len(batch) + self._sizes.get(version, mean) <= self.budget

    def _evict(self) -> None:
        """Drop the oldest days held, a whole day at a time, until the series fit the budget."""
        while self.held_bytes and self.names_bytes + self.held_bytes > self.budget:
            oldest = min(v[0] for v, s in self._files.items() if s is not None)
            self._drop([v for v, s in self._files.items() if s is not None and v[0] == oldest])

    def _drop(self, versions: list[tuple]) -> None:
        for v in versions:
            del self._files[v]
            self.held_bytes -= self._sizes[v]

    def _id_array(self, names: pa.ChunkedArray) -> np.ndarray:
        """The projects' ids, new names numbered as they come (one dictionary lookup per distinct name)."""
        encoded = pc.dictionary_encode(names.combine_chunks())
        words = encoded.dictionary
        found = pc.index_in(words, value_set=self._known)
        if found.null_count:
            for name in words.filter(pc.is_null(found)).to_pylist():
                self.ids[name] = len(self.names)
                self.names.append(name)
                self.names_bytes += _NAME_BYTES + sys.getsizeof(name) + len(name.encode())
            self._known = pa.array(self.names, pa.string())
            found = pc.index_in(words, value_set=self._known)
        return found.to_numpy().astype(np.int32)[encoded.indices.to_numpy(zero_copy_only=False)]

    def _series(self, rows: pa.Table) -> Optional[dict[str, Series]]:
        if pc.any(pc.is_valid(rows["category"])).as_py():
            return None  # a category in these dimensions: this file's rows are not kept
        project = self._id_array(rows.column("project"))
        with_mirrors = pc.equal(rows["dimension"], "with_mirrors").to_numpy(zero_copy_only=False)
        counts = rows.column("downloads").to_numpy().astype(np.int64)
        order = np.lexsort((project, with_mirrors))
        project, with_mirrors, counts = project[order], with_mirrors[order], counts[order]
        fits = counts.size == 0 or (counts.min() >= 0 and counts.max() <= _INT32_MAX)  # half the memory, same values
        counts = counts.astype(np.int32) if fits else counts
        split = int(np.count_nonzero(~with_mirrors))
        return {"overall": (project[:split], counts[:split]), "with_mirrors": (project[split:], counts[split:])}

    def servable(self, days: Iterable[str]) -> bool:
        """True when every file of `days` is held with its series (they answer for all of those days)."""
        return all(self._files.get(v) is not None for d in days for v in self._days.get(d, []))

    def _parts(self, day: str, dimension: str) -> list[Series]:
        out = []
        for v in self._days.get(day, []):
            held = self._files.get(v)
            if held is not None and held[dimension][0].size:
                out.append(held[dimension])
        return out

    def rows(self, projects: list[str], dimension: str, days: list[str]) -> dict[str, list[tuple[str, int]]]:
        """{project: [(day, downloads), ...]} over `days` (ascending), a day only where the project has a row."""
        out: dict[str, list[tuple[str, int]]] = {p: [] for p in projects}
        known = [(p, self.ids[p]) for p in projects if p in self.ids]
        if not known:
            return out
        want = np.array([i for _, i in known], dtype=np.int32)
        for day in days:
            sums: dict[str, int] = {}
            for ids, counts in self._parts(day, dimension):
                at = np.minimum(np.searchsorted(ids, want), ids.size - 1)
                for (p, _), k, hit in zip(known, at, ids[at] == want):
                    if hit:
                        sums[p] = sums.get(p, 0) + int(counts[k])
            for p, n in sums.items():
                out[p].append((day, n))
        return out

    def totals(self, dimension: str, days: list[str]) -> dict[str, int]:
        """{project: downloads summed over `days`} of every project with a row on any of them."""
        size = len(self.names)
        sums = np.zeros(size, dtype=np.int64)
        seen = np.zeros(size, dtype=bool)
        for day in days:
            for ids, counts in self._parts(day, dimension):
                np.add.at(sums, ids, counts.astype(np.int64))
                seen[ids] = True
        return {self.names[i]: int(sums[i]) for i in np.flatnonzero(seen)}

    def present(self, project: str, dimension: str, days: list[str]) -> bool:
        """True when `project` has a row of `dimension` on any of `days`."""
        pid = self.ids.get(project)
        if pid is None:
            return False
        for day in days:
            for ids, _ in self._parts(day, dimension):
                k = min(int(np.searchsorted(ids, pid)), ids.size - 1)
                if ids[k] == pid:
                    return True
        return False


def _nbytes(held: Optional[dict[str, Series]]) -> int:
    """Bytes of a file's arrays (each dimension's are views of one sorted array: their sizes add up to it)."""
    return 0 if held is None else sum(a.nbytes for pair in held.values() for a in pair)
