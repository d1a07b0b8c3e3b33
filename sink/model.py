"""What the dataflow hands the sink: closed 1-second windows, sealed rollup buckets and pipeline counters."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional

import msgspec

from pypi_pulse.events import iso_second
from pypi_pulse.rules import STORED


class WindowRow(msgspec.Struct, frozen=True):
    """One closed 1-second window; a later version of the same `start` replaces the earlier one."""

    start: int  # epoch second, aligned to a whole UTC second
    downloads: int
    unique_packages: int
    countries: dict[str, int]
    top: list[tuple[str, int]]  # (project, downloads), ties by name

    def to_json(self) -> dict:
        """The shape shared by `pypi-pulse windows` and `GET /api/live/windows`."""
        return {
            "start": iso_second(self.start),
            "downloads": self.downloads,
            "unique_packages": self.unique_packages,
            "countries": dict(sorted(self.countries.items(), key=lambda kv: (-kv[1], kv[0]))),
            "top": [{"project": p, "downloads": n} for p, n in self.top],
        }


class RollupBucket(msgspec.Struct, frozen=True):
    """A sealed slice of event time whose rollup counts are final (the lateness horizon has passed).

    The dataflow seals aligned 10-minute blocks (see dataflow/clock.py); tests and tools may use single minutes.

    `counts` maps (day 'YYYY-MM-DD', project, dimension, category) to downloads. Category None is SQL NULL.
    Applying the same bucket twice is a no-op: the sink records the ids of buckets it has applied.
    """

    bucket: int  # epoch second of the bucket start
    counts: Mapping[tuple[str, str, str, Optional[str]], int]  # a dict, or a dataflow block's columns (BlockRows)
    span: int = 60  # seconds covered, a whole number of minutes inside one UTC day; each minute is applied once
    part: Optional[tuple[int, int]] = None  # (shard, shards): this shard's projects only, of a sharded dataflow

    def minutes(self) -> range:
        """The ids the sink records as applied: one per minute, so buckets of any span stay comparable."""
        return range(self.bucket, self.bucket + self.span, 60)


class PipelineStats(msgspec.Struct, frozen=True):
    """Cumulative dataflow counters (snapshot-consistent with the windows, so they survive restarts exactly)."""

    counters: dict[str, int]
    offsets: dict[int, int]  # partition -> next offset to read
    watermark: Optional[float] = None
    updated_at: Optional[float] = None
    # every rollup block before this event second has left the dataflow (sealed and merged): its days can be
    # compacted. Not stored; None where unknown
    blocks_before: Optional[float] = None


# Dimensions stored in the daily rollups; python_major and the two overall figures are derived at seal time.
DIMENSIONS = STORED
