"""The rollup history: one open, columnar, append-only layout that any engine reads as it is.

    HISTORY/day=YYYY-MM-DD/block-<start>-<span>.parquet   a sealed block of the stream, written once
    HISTORY/day=YYYY-MM-DD/day.parquet                    the day, complete: compacted, or written by a backfill

Every file has the columns of `SCHEMA` (docs/history.md). A file becomes visible by an atomic rename and is never
changed afterwards, so readers need no lock: a block sealed again after a crash replaces its own file (same name,
same rows) instead of adding to the counts. Once `day.parquet` exists the day's block files are ignored by readers
and deleted; a day is dropped (retention) or rewritten (folding the long tail's fine detail) whole.

Each file also carries, in its Parquet key-value metadata, the day's all-project totals per (dimension, category)
of what it holds, taken before any folding: `daily_totals` reads footers, not rows, and stays exact for everyone.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from pypi_pulse.rules import FOLDED
from pypi_pulse.sink.rollup import FOLDED_CATEGORY

SCHEMA = pa.schema(
    [
        pa.field("day", pa.date32(), nullable=False),
        pa.field("project", pa.string(), nullable=False),
        pa.field("dimension", pa.string(), nullable=False),
        pa.field("category", pa.string()),
        pa.field("downloads", pa.int64(), nullable=False),
    ]
)
ROWS = pa.schema([f for f in SCHEMA if f.name != "day"])  # what a writer hands over: the day is the file's
TOTALS_KEY = b"pypi_pulse.totals"  # JSON [[dimension, category, downloads], ...]: the file's all-project totals
SOURCE_KEY = b"pypi_pulse.source"  # "stream", or the backfill's source tag
FOLDED_KEY = b"pypi_pulse.folded_below"  # projects under this many downloads (with mirrors) had their detail folded
SORT_KEYS = [("project", "ascending"), ("dimension", "ascending"), ("category", "ascending")]
DAY_FILE = "day.parquet"
# Rows are sorted by project: row groups of this size let a reader skip, by their min/max statistics, every group
# that cannot hold the project it asks for (a day of PyPI is tens of millions of rows). A question about one project
# decodes one group of every day file it reads, so smaller groups cost it less: over 180 day files of 244,000 rows,
# 16 Ki-row groups answered one project's Python-minor or country rows in half the time of 64 Ki-row groups (DuckDB
# decompresses a group's whole column chunk; smaller pages do not help), for 9% more bytes.
ROW_GROUP_ROWS = 16 * 1024
STREAM = "stream"
# block-<start>-<span>.parquet, or block-<start>-<span>-<shard>-<shards>.parquet: one shard's projects of the block
_BLOCK = re.compile(r"^block-(\d+)-(\d+)(?:-(\d+)-(\d+))?\.parquet$")
_DAY_DIR = re.compile(r"^day=(\d{4}-\d{2}-\d{2})$")


class ReadOnlyHistory(PermissionError):
    """A write to a history opened read-only (the history of a read-only sink)."""


def day_of(second: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=second // 86400)).isoformat()


@dataclass
class DayFiles:
    """What one day directory holds; `files` are the ones a reader takes (the day file, else the blocks)."""

    day: str
    day_file: Optional[str] = None
    blocks: dict[str, tuple[int, int, int, int]] = field(default_factory=dict)  # name -> (start, span, shard, of)
    stamps: dict[str, tuple[int, int]] = field(default_factory=dict)  # file name -> (size, mtime ns): its version

    @property
    def files(self) -> list[str]:
        return [DAY_FILE] if self.day_file else sorted(self.blocks)

    def covered(self) -> list[tuple[int, int]]:
        """The [start, end) event-time ranges whose counts the history holds for this day."""
        if self.day_file:
            start = int(dt.datetime.fromisoformat(self.day).replace(tzinfo=dt.UTC).timestamp())
            return [(start, start + 86400)]
        parts: dict[tuple[int, int], dict[int, set[int]]] = {}  # range -> shards -> the shards' files present
        for start, span, shard, shards in self.blocks.values():
            parts.setdefault((start, start + span), {}).setdefault(shards, set()).add(shard)
        # a sharded block counts once every shard's file is there (an unsharded block is one shard of one)
        return sorted(r for r, present in parts.items() if any(len(ks) == n for n, ks in present.items()))

    def has(self, start: int, span: int, part: Optional[tuple[int, int]]) -> bool:
        return block_name(start, span, part) in self.blocks


def block_name(start: int, span: int, part: Optional[tuple[int, int]] = None) -> str:
    return f"block-{start}-{span}.parquet" if part is None else f"block-{start}-{span}-{part[0]}-{part[1]}.parquet"


def _block_key(m: re.Match) -> tuple[int, int, int, int]:
    start, span = int(m.group(1)), int(m.group(2))
    return (start, span, int(m.group(3)), int(m.group(4))) if m.group(3) is not None else (start, span, 0, 1)


def _filesystem(location: str | Path) -> tuple[pafs.FileSystem, str]:
    text = str(location)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), os.path.abspath(text)


def totals_of(rows: pa.Table) -> list[list]:
    """[[dimension, category, downloads], ...] summed over projects, sorted (category None stays None)."""
    if not rows.num_rows:
        return []
    summed = rows.group_by(["dimension", "category"], use_threads=False).aggregate([("downloads", "sum")])
    return sorted(
        ([d, c, int(n)] for d, c, n in zip(*(summed.column(i).to_pylist() for i in range(3)))),
        key=lambda t: (t[0], t[1] or ""),
    )


def _merge_totals(*lists: list[list]) -> list[list]:
    sums: dict[tuple, int] = {}
    for totals in lists:
        for d, c, n in totals:
            sums[(d, c)] = sums.get((d, c), 0) + n
    return sorted(([d, c, n] for (d, c), n in sums.items()), key=lambda t: (t[0], t[1] or ""))


class History:
    """Writes and lists the layout. One writer per block name (the dataflow), one per day file (the dataflow's
    compaction, or a backfill); any number of readers (sink/history_reader.py)."""

    def __init__(self, location: str | Path, readonly: bool = False):
        self.location = str(location)
        self.readonly = readonly
        self.fs, self.root = _filesystem(location)

    def _writing(self) -> None:
        if self.readonly:
            raise ReadOnlyHistory(f"the history at {self.location} is open read-only")

    def _dir(self, day: str) -> str:
        return f"{self.root}/day={day}"

    # ---- listing ------------------------------------------------------------------------------------------------
    def days(self) -> list[str]:
        infos = self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True))
        found = (_DAY_DIR.match(i.base_name) for i in infos if i.type == pafs.FileType.Directory)
        return sorted(m.group(1) for m in found if m)

    def day_files(self, day: str) -> DayFiles:
        out = DayFiles(day)
        for info in self.fs.get_file_info(pafs.FileSelector(self._dir(day), allow_not_found=True)):
            name = info.base_name
            if name == DAY_FILE:
                out.day_file = name
            elif m := _BLOCK.match(name):
                out.blocks[name] = _block_key(m)
        return out

    def listing(self) -> list[DayFiles]:
        """Every day's files in one listing of the tree (what a reader refreshes from)."""
        by_day: dict[str, DayFiles] = {}
        selector = pafs.FileSelector(self.root, allow_not_found=True, recursive=True)
        for info in self.fs.get_file_info(selector):
            if info.type != pafs.FileType.File:
                continue
            parent, name = info.path.rsplit("/", 2)[-2:]
            m = _DAY_DIR.match(parent)
            if not m:
                continue
            day = by_day.setdefault(m.group(1), DayFiles(m.group(1)))
            day.stamps[name] = (info.size or 0, info.mtime_ns or 0)
            if name == DAY_FILE:
                day.day_file = name
            elif b := _BLOCK.match(name):
                day.blocks[name] = _block_key(b)
        return [by_day[d] for d in sorted(by_day)]

    def path(self, day: str, name: str) -> str:
        return f"{self._dir(day)}/{name}"

    def metadata(self, day: str, name: str) -> dict[bytes, bytes]:
        with self.fs.open_input_file(self.path(day, name)) as f:
            return pq.read_metadata(f).metadata or {}

    def totals(self, day: str, name: str) -> list[list]:
        return json.loads(self.metadata(day, name).get(TOTALS_KEY, b"[]"))

    def read(self, day: str, name: str) -> pa.Table:
        with self.fs.open_input_file(self.path(day, name)) as f:
            return pq.read_table(f, schema=SCHEMA)

    # ---- writing ------------------------------------------------------------------------------------------------
    def _publish(self, day: str, name: str, rows: pa.Table, meta: dict[bytes, bytes], sort: bool) -> None:
        """Write `rows` (ROWS columns) as `name` of `day`: to a temporary name, then renamed into place."""
        self._writing()
        rows = rows.select(ROWS.names).cast(ROWS)
        if sort and rows.num_rows:
            rows = rows.sort_by(SORT_KEYS)
        days = pa.array([dt.date.fromisoformat(day)] * rows.num_rows, pa.date32())
        table = pa.Table.from_arrays([days, *rows.columns], schema=SCHEMA.with_metadata(meta))
        self.fs.create_dir(self._dir(day), recursive=True)
        tmp = self.path(day, f".{name}.{uuid.uuid4().hex}.tmp")
        with self.fs.open_output_stream(tmp) as out:
            pq.write_table(table, out, compression="zstd", row_group_size=ROW_GROUP_ROWS)
        self.fs.move(tmp, self.path(day, name))

    def write_block(self, start: int, span: int, rows: pa.Table, part: Optional[tuple[int, int]] = None) -> bool:
        """A sealed block of the stream. False (nothing written) when its day already has its day file: the day
        was compacted (a block sealed again after a restart is in it) or a backfill owns it."""
        day = day_of(start)
        if self.day_files(day).day_file:
            return False
        meta = {TOTALS_KEY: json.dumps(totals_of(rows)).encode(), SOURCE_KEY: STREAM.encode()}
        self._publish(day, block_name(start, span, part), rows, meta, sort=True)
        return True

    def write_day(self, day: str, rows: pa.Table, totals: list[list], source: str, folded_below: int = 0) -> None:
        """Make `day` hold exactly `rows` (a backfill, or a compaction): the day file replaces whatever the day
        held, and the day's block files go."""
        meta = {
            TOTALS_KEY: json.dumps(totals).encode(),
            SOURCE_KEY: source.encode(),
            FOLDED_KEY: str(folded_below).encode(),
        }
        self._publish(day, DAY_FILE, rows, meta, sort=True)
        self._drop_blocks(day)

    def _drop_blocks(self, day: str) -> None:
        """The day's block files, and the temporary files of writes a crash cut short (never renamed, never read)."""
        self._writing()
        infos = self.fs.get_file_info(pafs.FileSelector(self._dir(day), allow_not_found=True))
        litter = [i.base_name for i in infos if i.base_name.startswith(".") and i.base_name.endswith(".tmp")]
        for name in [*self.day_files(day).blocks, *litter]:
            try:
                self.fs.delete_file(self.path(day, name))
            except FileNotFoundError:
                pass

    def compact(self, day: str, min_daily_downloads: int = 0) -> bool:
        """Fold a complete day's blocks into its day file, summed and sorted, with the fine detail of projects under
        `min_daily_downloads` (with mirrors) folded into one `other` row per dimension (0: everything exact).
        Idempotent: a day that has its day file only loses leftover blocks (a crash after the rename)."""
        files = self.day_files(day)
        if files.day_file:
            self._drop_blocks(day)
            return False
        if not files.blocks:
            return False
        names = sorted(files.blocks)
        rows = pa.concat_tables([self.read(day, n).drop_columns(["day"]) for n in names])
        totals = _merge_totals(*(self.totals(day, n) for n in names))
        rows = rows.group_by(["project", "dimension", "category"], use_threads=False).aggregate([("downloads", "sum")])
        rows = rows.rename_columns(["project", "dimension", "category", "downloads"])
        self.write_day(day, fold(rows, min_daily_downloads), totals, STREAM, min_daily_downloads)
        return True

    def refold(self, day: str, min_daily_downloads: int) -> bool:
        """Fold an already complete day's long tail (a day written before the setting, or by a backfill)."""
        files = self.day_files(day)
        if not files.day_file or min_daily_downloads <= 0:
            return False
        meta = self.metadata(day, DAY_FILE)
        if int(meta.get(FOLDED_KEY, b"0") or 0) >= min_daily_downloads:
            return False
        rows = self.read(day, DAY_FILE).drop_columns(["day"])
        folded = fold(rows, min_daily_downloads)
        totals = json.loads(meta.get(TOTALS_KEY, b"[]"))
        self.write_day(day, folded, totals, meta.get(SOURCE_KEY, STREAM.encode()).decode(), min_daily_downloads)
        return True

    def drop_through(self, cutoff_day: str) -> int:
        """Retention: delete every day up to and including `cutoff_day`, whole. Returns the days dropped."""
        self._writing()
        dropped = 0
        for day in self.days():
            if day <= cutoff_day:
                self.fs.delete_dir(self._dir(day))
                dropped += 1
        return dropped


def fold(rows: pa.Table, min_daily_downloads: int) -> pa.Table:
    """Rows with the fine dimensions (rules.FOLDED) of projects under `min_daily_downloads` downloads (with
    mirrors) summed into one `other` row each; every other row as it is."""
    if min_daily_downloads <= 0 or not rows.num_rows:
        return rows
    mirrors = rows.filter(pc.equal(rows["dimension"], "with_mirrors"))
    small = mirrors.filter(pc.less(mirrors["downloads"], min_daily_downloads))["project"]
    folding = pc.and_(pc.is_in(rows["dimension"], pa.array(FOLDED)), pc.is_in(rows["project"], small))
    if not pc.any(folding).as_py():
        return rows
    moved = rows.filter(folding)
    moved = moved.set_column(2, "category", pa.array([FOLDED_CATEGORY] * moved.num_rows, pa.string()))
    summed = moved.group_by(["project", "dimension", "category"], use_threads=False).aggregate([("downloads", "sum")])
    summed = summed.rename_columns(["project", "dimension", "category", "downloads"]).cast(ROWS)
    return pa.concat_tables([rows.filter(pc.invert(folding)).cast(ROWS), summed])


def history_path(data_dir: Path) -> Path:
    """The default history location: DATA_DIR/history."""
    return data_dir / "history"
