"""The daily and weekly rhythm of downloads, read from what the sink already holds.

- Per country and hour: the per-second windows (kept 48 h) carry each second's downloads per country; summed over
  10-minute blocks here (`block_countries`), which the dashboard caches once a block can no longer change.
- All downloads by hour of the day over weeks: `block_totals` (each sealed 10-minute rollup block's downloads,
  kept with the rollups; a synthetic history writes them for its days too).
- By day of the week: the daily totals of the history (Parquet files: sink/history.py).
"""

from __future__ import annotations

import datetime as dt
from collections import Counter

from pypi_pulse.sink.base import Sink

BLOCK_S = 600
DAY_S = 86400


def block_countries(sink: Sink, block_start: int) -> tuple[int, Counter]:
    """(seconds with a window, {country: downloads}) of the 10-minute block starting at `block_start`."""
    rows = sink.windows(block_start, block_start + BLOCK_S)
    total: Counter = Counter()
    for w in rows:
        total.update(w.countries)
    return len(rows), total


def newest_window(sink: Sink) -> int | None:
    ((v,),) = sink.query("SELECT MAX(start) FROM windows")
    return None if v is None else int(v)


def hour_profile(sink: Sink, start_day: str, end_day: str) -> dict[int, int]:
    """{UTC hour of the day: downloads} over the days [start_day, end_day], from the sealed blocks' totals."""
    lo = int(dt.datetime.fromisoformat(start_day).replace(tzinfo=dt.UTC).timestamp())
    hi = int(dt.datetime.fromisoformat(end_day).replace(tzinfo=dt.UTC).timestamp()) + DAY_S
    rows = sink.query(
        "SELECT ((block_end - 1) % 86400) / 3600 AS h, SUM(downloads) FROM block_totals "
        "WHERE block_end > ? AND block_end <= ? GROUP BY ((block_end - 1) % 86400) / 3600",
        (lo, hi),
    )
    return {int(h): int(n) for h, n in rows}


def weekday_totals(sink: Sink, start_day: str, end_day: str) -> dict[int, list[int]]:
    """{ISO weekday (1 = Monday): [each such day's downloads without mirrors]} over [start_day, end_day]."""
    out: dict[int, list[int]] = {d: [] for d in range(1, 8)}
    for day, n in sink.history_query(
        "SELECT day, downloads FROM daily_totals WHERE dimension = 'overall' AND category = '' "
        "AND day >= ? AND day <= ? ORDER BY day",
        (start_day, end_day),
    ):
        out[dt.date.fromisoformat(day).isoweekday()].append(int(n))
    return out
