"""Replaying exported downloads: NDJSON as BigQuery writes it, CSV and Parquet (flattened or nested), gzip too.

NDJSON lines are forwarded as they are (the dataflow validates them); the producer only finds the project for the
Kafka key, and the timestamp when it must pace or restamp. CSV and Parquet rows are rebuilt into the nested row
shape; a row that cannot be rebuilt goes to the dead-letter topic with the reason.
"""

from __future__ import annotations

import csv
import gzip
import io
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator, Optional

import orjson

from pypi_pulse.errors import UserError
from pypi_pulse.events import BadTimestamp, epoch_seconds, format_bigquery_ts


@dataclass(slots=True)
class Record:
    value: bytes
    key: Optional[bytes]
    error: Optional[str] = None  # set: dead-letter `value` with this reason


_PROJECT = re.compile(rb'"project"\s*:\s*"((?:[^"\\]|\\.)*)"')
_TIMESTAMP = re.compile(rb'"timestamp"\s*:\s*("(?:[^"\\]|\\.)*"|[0-9.eE+-]+)')

# Flattened column names (CSV, flat Parquet) → path in the nested row. Both `file.project` and `file_project` work.
_NESTED = {
    "file": ["filename", "project", "version", "type"],
    "details": ["installer", "python", "implementation", "distro", "system", "cpu", "openssl_version",
                "setuptools_version", "rustc_version", "ci"],
}
_SUB = {"installer": ["name", "version"], "implementation": ["name", "version"], "system": ["name", "release"],
        "distro": ["name", "version", "id", "libc"], "libc": ["lib", "version"]}
_TOP = ["timestamp", "country_code", "url", "project", "file", "details", "tls_protocol", "tls_cipher"]


def detect_format(path: Path) -> str:
    name = path.name.lower().removesuffix(".gz")
    for ext, fmt in ((".ndjson", "ndjson"), (".jsonl", "ndjson"), (".json", "ndjson"), (".csv", "csv"),
                     (".parquet", "parquet"), (".pq", "parquet")):
        if name.endswith(ext):
            return fmt
    raise UserError(f"cannot tell the format of {path}: name it .ndjson/.jsonl/.json, .csv or .parquet (optionally .gz)")


def _open_binary(path: Path):
    return gzip.open(path, "rb") if path.name.lower().endswith(".gz") else open(path, "rb")


def event_time(value: bytes) -> Optional[float]:
    """The event time of a raw JSON line without parsing the whole line (None if absent or unreadable)."""
    m = _TIMESTAMP.search(value)
    if m is None:
        return None
    raw = m.group(1)
    try:
        ts = raw[1:-1].decode() if raw.startswith(b'"') else float(raw)
        return epoch_seconds(ts)
    except (BadTimestamp, ValueError, UnicodeDecodeError):
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

    def build(prefix: str, fields: list[str]):
        out, any_set = {}, False
        for f in fields:
            key = f"{prefix}_{f}"
            if f in _SUB:
                out[f] = build(key, _SUB[f])
                any_set = any_set or out[f] is not None
            else:
                out[f] = norm.get(key)
                any_set = any_set or out[f] is not None
        return out if any_set else None

    row = {k: norm.get(k) for k in _TOP if k not in _NESTED}
    for k, fields in _NESTED.items():
        if isinstance(norm.get(k), str):  # a JSON-encoded record in one column
            row[k] = orjson.loads(norm[k])
        elif isinstance(norm.get(k), dict):
            row[k] = norm[k]
        else:
            row[k] = build(k, fields)
    details = row.get("details")
    if details and isinstance(details.get("ci"), str):
        details["ci"] = True if details["ci"].lower() == "true" else None
    ts = row.get("timestamp")
    if isinstance(ts, datetime):
        row["timestamp"] = format_bigquery_ts(ts.replace(tzinfo=ts.tzinfo or timezone.utc).timestamp())
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
    return buf.getvalue().rstrip("\r\n").encode()


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
        with _open_binary(path) as fb:
            text = io.TextIOWrapper(fb, encoding="utf-8", newline="")
            reader = csv.reader(text)
            header = next(reader, None)
            if not header or "timestamp" not in [c.strip().lower() for c in header]:
                raise UserError(f"{path} has no 'timestamp' column: export with a header row of BigQuery column names")
            for cells in reader:
                if not cells:
                    continue
                if len(cells) != len(header):
                    yield Record(_csv_line(cells), None, f"CSV row has {len(cells)} cells, the header {len(header)}")
                    continue
                yield _from_row(dict(zip(header, cells)), _csv_line(cells))
    else:
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(path)
        except Exception as exc:
            raise UserError(f"{path} is not a readable Parquet file: {exc}") from None
        for batch in pf.iter_batches(batch_size=65_536):
            for row in batch.to_pylist():
                yield _from_row(row, orjson.dumps(row, default=str))


def count_lines(path: Path) -> Optional[int]:
    """Total rows for the progress bar (cheap for NDJSON/CSV, free for Parquet)."""
    fmt = detect_format(path)
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    with _open_binary(path) as f:
        n = sum(1 for line in f if line.strip())
    return n - 1 if fmt == "csv" else n
