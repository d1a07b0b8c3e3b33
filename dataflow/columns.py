"""A batch's per-event values as integer codes into a table of distinct values.

Why: from Kafka bytes to counts, nothing should cost a Python operation per event. A column of a batch is a numpy
array of codes plus the (short) table of the distinct values they stand for; normalising a project name, mapping
a country or reading a `details` record is done once per table entry, and counting is numpy work on the codes.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class Codes(dict):
    """value -> small int, assigned in order of first sight; looked up at C speed with `map(codes.__getitem__, col)`
    (a missing key costs one Python call, once per distinct value). Iterating yields the values in code order."""

    __slots__ = ()

    def __missing__(self, key):
        code = self[key] = len(self)
        return code

    def column(self, values) -> np.ndarray:
        return np.fromiter(map(self.__getitem__, values), np.int64, len(values))

    def table(self) -> np.ndarray:
        """code -> value, as an object array to decode many codes with one `take`."""
        return object_array(list(self))


def object_array(values: list) -> np.ndarray:
    out = np.empty(len(values), dtype=object)
    out[:] = values
    return out


class Coded:
    """One column: `codes[i]` is the index in `table` of event i's value. Table values are distinct."""

    __slots__ = ("codes", "table")

    def __init__(self, codes: np.ndarray, table: list):
        self.codes, self.table = codes, table

    @staticmethod
    def of(values: Iterable) -> Coded:
        """From a list of values (the per-event paths)."""
        codes = Codes()
        column = codes.column(values if isinstance(values, list) else list(values))
        return Coded(column, list(codes))

    @staticmethod
    def mapped(indices: np.ndarray, values: list) -> Coded:
        """`indices` into `values`, which may repeat (two raw names normalising to one project): merged here."""
        codes = Codes()
        remap = codes.column(values)
        return Coded(remap[indices] if len(remap) else indices.astype(np.int64), list(codes))

    def take(self, rows) -> Coded:
        """The events at `rows` (indices, a boolean mask or a slice); same table."""
        return Coded(self.codes[rows], self.table)

    def compact(self, rows) -> Coded:
        """The events at `rows`, with a table of their own values only: a shard's part of a batch must not carry
        (nor code, count and pickle) every other shard's values too."""
        codes = self.codes[rows]
        present = np.zeros(len(self.table), dtype=bool)
        present[codes] = True
        kept = np.flatnonzero(present)
        if len(kept) == len(self.table):
            return Coded(codes, self.table)
        remap = np.cumsum(present) - 1
        return Coded(remap[codes], [self.table[i] for i in kept.tolist()])

    def values(self) -> list:
        return object_array(self.table)[self.codes].tolist() if len(self.codes) else []

    def counts(self) -> dict:
        """value -> number of events."""
        if not len(self.codes):
            return {}
        present, n = np.unique(self.codes, return_counts=True)
        # per present value, not per table entry: a second's events touch a small part of a batch's table
        return dict(zip(map(self.table.__getitem__, present.tolist()), n.tolist()))

    def __len__(self) -> int:
        return len(self.codes)

    def __getstate__(self):
        return (self.codes, self.table)

    def __setstate__(self, state):
        self.codes, self.table = state

    def __eq__(self, other) -> bool:
        return isinstance(other, Coded) and self.values() == other.values()

    def __repr__(self) -> str:
        return f"Coded({self.values()!r})"
