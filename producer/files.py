"""Replaying exported downloads: NDJSON as BigQuery writes it, CSV and Parquet (flattened or nested), gzip too.

NDJSON lines are forwarded as they are (the dataflow validates them); the producer only finds the project for the
Kafka key, and the timestamp when it must pace or restamp. CSV and Parquet rows are rebuilt into the nested row
shape; a row that cannot be rebuilt goes to the dead-letter topic with the reason.

One bad row never ends a replay: a CSV row that is not UTF-8 or holds a field too large to read is dead-lettered
(its bytes kept as they were), a line too large for Kafka is dead-lettered by the publisher, and a gzip export
damaged part-way (truncated, corrupt) is replayed up to the damage, which is reported (`input_damage`). A UTF-8
byte-order mark at the start of a file is not part of its first row.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

import orjson
import structlog

from pypi_pulse.bounds import accepted_time
from pypi_pulse.errors import UserError
from pypi_pulse.event_fields import field_tree
from pypi_pulse.events import BadTimestamp, epoch_seconds, format_bigquery_ts


@dataclass(slots=True)
class Record:
    value: bytes
    key: Optional[bytes]
    error: Optional[str] = None  # set: dead-letter `value` with this reason


_PROJECT = re.compile(rb'"project"\s*:\s*"((?:[^"\\]|\\.)*)"')
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*("(?:[^"\\]|\\.)*"|[0-9.eE+-]+)')

# Flattened column names (CSV, flat Parquet) → path in the nested row (the event's fields, pypi_pulse.events).
# Both `file.project` and `file_project` work.
_FIELDS = field_tree()
_NESTED = {k: sub for k, sub in _FIELDS.items() if sub is not None}


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for ext, fmt in (
        (".ndjson", "ndjson"),
        (".jsonl", "ndjson"),
        (".json", "ndjson"),
        (".csv", "csv"),
        (".parquet", "parquet"),
        (".pq", "parquet"),
    ):
        if name.endswith(ext):
            return fmt
    raise UserError(
        f"cannot tell the format of {path}: name it .ndjson/.jsonl/.json, .csv or .parquet (optionally .gz)"
    )


log = structlog.get_logger(__name__)
BOM = b"\xef\xbb\xbf"
# Python's csv reader refuses fields over 128 KiB by default, and raising it without a bound would let one unclosed
# quote read the rest of a file into one field: a field up to this size is read (its row is then judged like any
# other, and one larger than max_event_bytes dead-lettered by the publisher), a larger one dead-letters its row.
CSV_FIELD_LIMIT = 16 << 20
_damage: dict[Path, str] = {}


class _UpToDamage(io.RawIOBase):
    """A gzip export read up to where its compressed data is damaged, as if the file ended there. `read1` returns
    each decompressed piece as it comes, so nothing before the damage is lost with the exception."""

    def __init__(self, path: Path):
        self.path = path
        self._gz = gzip.open(path, "rb")
        self._done = False
        self.pos = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self._done:
            return 0
        try:
            data = self._gz.read1(len(buffer))
        except (EOFError, OSError, zlib.error) as exc:  # truncated, or not gzip past this point
            self._done = True
            _report_damage(
                self.path,
                f"{self.path.name}: compressed data ends or breaks after {self.pos:,} bytes "
                f"({exc}); the events before it are replayed, none after it",
            )
            return 0
        buffer[: len(data)] = data
        self.pos += len(data)
        return len(data)

    def close(self) -> None:
        self._gz.close()
        super().close()


def _report_damage(path: Path, message: str) -> None:
    if path not in _damage:
        log.warning("replay.input_damaged", file=str(path), error=message)
    _damage[path] = message


def input_damage(path: Path) -> Optional[str]:
    """What ended the read of `path` early, if anything did (a replay's summary reports it)."""
    return _damage.get(path)


def _open_binary(path: Path):
    f = io.BufferedReader(_UpToDamage(path), 1 << 20) if path.name.lower().endswith(".gz") else open(path, "rb")
    if f.peek(len(BOM))[: len(BOM)] == BOM:
        f.read(len(BOM))
    return f


def starts_with_bom(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(len(BOM)) == BOM


def event_time(value: bytes) -> Optional[float]:
    """The event time of a raw JSON line without parsing the whole line (None if absent or unreadable)."""
    m = _TIMESTAMP.search(value)
    if m is None:
        return None
    raw = m.group(1)
    try:
        ts = raw[1:-1].decode() if raw.startswith(b'"') else float(raw)
        return accepted_time(epoch_seconds(ts))  # out of bounds: no time to pace or sort by (the dataflow says why)
    except (BadTimestamp, ValueError, UnicodeDecodeError, OverflowError):
        return None


def restamp(value: bytes, shift: float) -> bytes:
    row = orjson.loads(value)
    row["timestamp"] = format_bigquery_ts(epoch_seconds(row["timestamp"]) + shift)
    return orjson.dumps(row)


def key_of(value: bytes) -> Optional[bytes]:
    """The Kafka key of an event: its project, found without parsing the line."""
    m = _PROJECT.search(value)
    return m.group(1) if m else None


def _unflatten(flat: dict) -> dict:
    """Rebuild the nested row from `a.b.c` or `a_b_c` columns; empty strings are nulls (as BigQuery's CSV)."""
    norm = {k.strip().replace(".", "_").lower(): (None if v == "" else v) for k, v in flat.items()}

    def build(prefix: str, fields: dict):
        out, any_set = {}, False
        for f, sub in fields.items():
            key = f"{prefix}_{f}"
            out[f] = norm.get(key) if sub is None else build(key, sub)
            any_set = any_set or out[f] is not None
        return out if any_set else None

    row = {k: norm.get(k) for k in _FIELDS if k not in _NESTED}
    for k, fields in _NESTED.items():
        value = norm.get(k)
        if isinstance(value, str):  # a JSON-encoded record in one column
            row[k] = orjson.loads(value)
        elif isinstance(value, dict):
            row[k] = value
        else:
            row[k] = build(k, fields)
    details = row.get("details")
    if details and isinstance(details.get("ci"), str):
        details["ci"] = True if details["ci"].lower() == "true" else None
    ts = row.get("timestamp")
    if isinstance(ts, datetime):
        row["timestamp"] = format_bigquery_ts(ts.replace(tzinfo=ts.tzinfo or UTC).timestamp())
    return row


def _from_row(row: dict, original: bytes) -> Record:
    try:
        nested = _unflatten(row)
        value = orjson.dumps(nested, default=str)
    except Exception as exc:  # a row we cannot rebuild is dead-lettered, never dropped
        return Record(original, None, f"unreadable row: {exc}")
    project = nested.get("project") or ((nested.get("file") or {}).get("project"))
    return Record(value, project.encode() if isinstance(project, str) else None)


def _csv_line(cells: list[str]) -> bytes:
    """The row as CSV text again: what the dead-letter topic keeps of a row that could not be used."""
    buf = io.StringIO()
    csv.writer(buf).writerow(cells)
    return buf.getvalue().rstrip("\r\n").encode("utf-8", "surrogateescape")  # bytes that were not UTF-8 as they were


def read_records(path: Path, keys: bool = True) -> Iterator[Record]:
    """Every row of an export, NDJSON lines as they are. `keys=False`: no Kafka key is looked for (packed
    messages have none), which saves a regex per line."""
    if not path.is_file():
        raise UserError(f"input file {path} does not exist: check the path after file:")
    fmt = detect_format(path)
    if fmt == "ndjson":
        with _open_binary(path) as f:
            for line in f:
                line = line.strip()
                if line:
                    yield Record(line, key_of(line) if keys else None)
    elif fmt == "csv":
        yield from _csv_records(path)
    else:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise UserError(f"{path} is not a readable Parquet file: {exc}") from None
        for batch in pf.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                yield _from_row(row, orjson.dumps(row, default=str))


def _csv_records(path: Path) -> Iterator[Record]:
    if csv.field_size_limit() < CSV_FIELD_LIMIT:
        csv.field_size_limit(CSV_FIELD_LIMIT)
    with _open_binary(path) as fb:
        # bytes that are not UTF-8 become lone surrogates, found per row below: the row is dead-lettered, the rest read
        text = io.TextIOWrapper(fb, encoding="utf-8", errors="surrogateescape", newline="")
        reader = csv.reader(text)
        header = next(reader, None)
        if not header or "timestamp" not in [c.strip().lower() for c in header]:
            raise UserError(f"{path} has no 'timestamp' column: export with a header row of BigQuery column names")
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                yield Record(f"line {reader.line_num}".encode(), None, f"CSV row at line {reader.line_num}: {exc}")
                continue
            if not cells:
                continue
            try:
                "".join(cells).encode("utf-8")
            except UnicodeEncodeError as exc:
                byte = exc.object[exc.start].encode("utf-8", "surrogateescape")
                yield Record(
                    _csv_line(cells),
                    None,
                    f"unreadable row at line {reader.line_num}: byte 0x{byte.hex()} is not UTF-8",
                )
                continue
            if len(cells) != len(header):
                yield Record(_csv_line(cells), None, f"CSV row has {len(cells)} cells, the header {len(header)}")
                continue
            yield _from_row(dict(zip(header, cells)), _csv_line(cells))


def count_lines(path: Path) -> Optional[int]:
    """Total rows for the progress bar (cheap for NDJSON/CSV, free for Parquet)."""
    fmt = detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with _open_binary(path) as f:
        n = sum(1 for line in f if line.strip())
    return n - 1 if fmt == "csv" else n
