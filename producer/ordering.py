"""Replaying an export in event-time order, whatever order the file is in.

Why: a BigQuery extract comes in no time order (the table is clustered by project, not by time), and a replay is a
stream. The dataflow's watermark follows the newest events, so in file order an event more than the lateness
horizon behind them is dropped (counted, not lost, but not in the totals), every window is rewritten again and
again as its stragglers come, and pacing (`--speed realtime`, `Nx`) means nothing. Sorting by each event's second
(stable: the events of one second keep their file order) makes every replay exact and lets the dataflow seal its
rollups while the replay runs instead of all at the end.

How, cheaply: the usual line starts `{"timestamp":"YYYY-MM-DD HH:MM:SS.ffffff UTC"`, as BigQuery writes it. Those
lines' heads are checked as one numpy byte matrix and their seconds computed from its digits in integer
arithmetic (0.2 s for 400,000 lines); any other line (another layout, a CSV or Parquet row rebuilt as JSON) has
its timestamp found and parsed on its own. A line
with no readable timestamp keeps the second of the line before it (the dataflow dead-letters it with its reason).
An export larger than the memory budget is sorted in runs of that size, spilled to temporary files and merged.
"""

from __future__ import annotations

import heapq
import itertools
import math
import pickle
import tempfile
from operator import itemgetter
from pathlib import Path
from typing import Callable, Iterator, Optional

import numpy as np

from pypi_pulse.producer.files import Record, _open_binary, detect_format, event_time, read_records

# The fast layout: `{"timestamp":"`, the second's 19 bytes (`YYYY-MM-DD HH:MM:SS`, or a `T`), `.`, 6 digits and
# ` UTC"` (BigQuery's export) or `Z"` (ISO).
_FAST_LEN = 45
_HEAD_BYTES = np.frombuffer(b'{"timestamp":"', np.uint8)
_UTC_TAIL = np.frombuffer(b' UTC"', np.uint8)
_Z_TAIL = np.frombuffer(b'Z"', np.uint8)
_DIGITS = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18]  # within the 19 bytes of the second
_SEPS = [18, 21, 27, 30]  # in the line: the dashes and colons
_SEP_BYTES = np.frombuffer(b"--::", np.uint8)
_NO_TIME = np.iinfo(np.int64).min
_SPILL_CHUNK = 20_000  # records per pickle in a spilled run


def _line_second(line: bytes) -> int:
    """The event second of one line (`files.event_time`, the producer's one timestamp reader), or _NO_TIME."""
    ts = event_time(line)
    return int(ts // 1) if ts is not None and math.isfinite(ts) else _NO_TIME


def _civil_seconds(d: np.ndarray) -> np.ndarray:
    """Epoch seconds of `YYYY-MM-DD?HH:MM:SS` digit rows (n, 19), in integer arithmetic (days from civil)."""
    year = d[:, 0] * 1000 + d[:, 1] * 100 + d[:, 2] * 10 + d[:, 3]
    month = d[:, 5] * 10 + d[:, 6]
    day = d[:, 8] * 10 + d[:, 9]
    y = year - (month <= 2)
    era = y // 400
    yoe = y - era * 400
    doy = (153 * np.where(month > 2, month - 3, month + 9) + 2) // 5 + day - 1
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468
    return (days * 86400 + (d[:, 11] * 10 + d[:, 12]) * 3600 + (d[:, 14] * 10 + d[:, 15]) * 60
            + d[:, 17] * 10 + d[:, 18])


def _fast_seconds(lines: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
    """The event second of every line in the fast layout, and the indices of the lines that are not in it."""
    n = len(lines)
    heads = np.array([line[:_FAST_LEN] for line in lines], f"S{_FAST_LEN}").view(np.uint8).reshape(n, _FAST_LEN)
    digits = heads[:, 14:33].astype(np.int64) - 48
    utc = (heads[:, 40:45] == _UTC_TAIL).all(axis=1) | (heads[:, 40:42] == _Z_TAIL).all(axis=1)
    fast = ((heads[:, :14] == _HEAD_BYTES).all(axis=1) & (heads[:, 33] == ord(".")) & utc
            & ((digits[:, _DIGITS] >= 0) & (digits[:, _DIGITS] <= 9)).all(axis=1)
            & (heads[:, _SEPS] == _SEP_BYTES).all(axis=1) & ((heads[:, 24] == ord(" ")) | (heads[:, 24] == ord("T"))))
    return np.where(fast, _civil_seconds(digits), _NO_TIME), np.flatnonzero(~fast)


def line_seconds(lines: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
    """The event second of every event line (int64; _NO_TIME where none can be read), and the lines. A line in
    the fast layout is kept as it is (JSON allows the whitespace it may end with); any other is stripped, and
    dropped if blank, as a line-by-line read does."""
    keys, slow = _fast_seconds(lines)
    blank = []
    for i in slow.tolist():
        line = lines[i] = lines[i].strip()
        if line:
            keys[i] = _line_second(line)
        else:
            blank.append(i)
    if blank:
        keys = np.delete(keys, blank)
        gone = set(blank)
        lines = [line for i, line in enumerate(lines) if i not in gone]
    return keys, lines


def _fill_forward(keys: np.ndarray) -> np.ndarray:
    """A line without a readable time travels with the line before it (or the first timed line)."""
    valid = keys != _NO_TIME
    if valid.all() or not valid.any():
        return keys
    idx = np.where(valid, np.arange(len(keys)), 0)
    np.maximum.accumulate(idx, out=idx)
    first = int(np.argmax(valid))
    idx[:first] = first
    return keys[idx]


def _order(keys: np.ndarray) -> Optional[np.ndarray]:
    """The stable sort of `keys`, or None if they are in order already (a file written by a live stream)."""
    if len(keys) < 2 or bool((keys[1:] >= keys[:-1]).all()):
        return None
    return np.argsort(keys, kind="stable")


def _keyed(lines: list[bytes]) -> tuple[np.ndarray, list[bytes], Optional[np.ndarray]]:
    """The chunk's event lines, their seconds (filled forward) and the order that sorts them (None: in order)."""
    keys, lines = line_seconds(lines)
    keys = _fill_forward(keys)
    return keys, lines, _order(keys)


def _sorted_chunk(lines: list[bytes]) -> tuple[np.ndarray, list[bytes]]:
    keys, lines, order = _keyed(lines)
    if order is None:
        return keys, lines
    return keys[order], [lines[i] for i in order.tolist()]


def _ndjson_chunks(path: Path, budget: int) -> Iterator[list[bytes]]:
    """The export's lines, in chunks of about `budget` bytes cut at line ends."""
    with _open_binary(path) as f:
        tail = b""
        while True:
            block = f.read(max(budget, 1 << 20))
            if not block:
                break
            if tail:
                block = tail + block
            cut = block.rfind(b"\n") + 1
            if cut == 0:
                tail = block
                continue
            tail = block[cut:]
            lines = (block if cut == len(block) else block[:cut]).split(b"\n")
            # blank lines are dropped and others stripped by line_seconds; a CRLF export is stripped here
            yield list(map(bytes.strip, lines)) if b"\r" in block else lines
        if tail:
            yield [tail]


class _Run:
    """A sorted run spilled to disk: pickled (keys, lines) pieces, read back one piece at a time."""

    def __init__(self, directory: Path, keys: np.ndarray, lines: list[bytes]):
        directory.mkdir(parents=True, exist_ok=True)
        self.file = tempfile.TemporaryFile(dir=directory)
        for i in range(0, len(lines), _SPILL_CHUNK):
            pickle.dump((keys[i:i + _SPILL_CHUNK].tolist(), lines[i:i + _SPILL_CHUNK]), self.file,
                        protocol=pickle.HIGHEST_PROTOCOL)
        self.file.flush()

    def __iter__(self) -> Iterator[tuple[int, bytes]]:
        self.file.seek(0)
        try:
            while True:
                try:
                    keys, lines = pickle.load(self.file)
                except EOFError:
                    return
                yield from zip(keys, lines)
        finally:
            self.file.close()


def _merged(chunks: Iterator[list[bytes]], spill_dir: Optional[Path], out_size: int) -> Iterator[list[bytes]]:
    """Lines of every chunk in time order, in lists of up to `out_size`: one chunk is sorted in memory; more are
    sorted as runs, spilled and merged."""
    first = next(chunks, None)
    if first is None:
        return
    second = next(chunks, None)
    if second is None:  # in memory: each list is gathered as it is asked for, so the first goes out sooner
        _keys, lines, order = _keyed(first)
        for i in range(0, len(lines), out_size):
            yield lines[i:i + out_size] if order is None else [lines[j] for j in order[i:i + out_size].tolist()]
        return
    directory = spill_dir or Path(tempfile.gettempdir())
    runs = [_Run(directory, *_sorted_chunk(chunk)) for chunk in itertools.chain((first, second), chunks)]
    # heapq.merge is stable across runs in the order given, and each run is stable: file order within a second
    merged = map(itemgetter(1), heapq.merge(*runs, key=itemgetter(0)))
    while batch := list(itertools.islice(merged, out_size)):
        yield batch


def time_ordered_lines(path: Path, budget_bytes: int = 1 << 30, spill_dir: Optional[Path] = None,
                       on_bad: Optional[Callable[[Record], None]] = None,
                       out_size: int = 50_000) -> Iterator[list[bytes]]:
    """Every event of an export as a JSON line (NDJSON lines as they are, CSV and Parquet rows rebuilt), in
    event-time order, in lists of up to `out_size`. A row that cannot be rebuilt is handed to `on_bad` as it is
    read, before any line is given (sorting reads every row first): it has no time, and goes to the dead letters."""
    if detect_format(path) == "ndjson":
        yield from _merged(_ndjson_chunks(path, budget_bytes), spill_dir, out_size)
        return

    def good_chunks() -> Iterator[list[bytes]]:
        chunk: list[bytes] = []
        size = 0
        for rec in read_records(path, keys=False):
            if rec.error is not None:
                if on_bad is not None:
                    on_bad(rec)
                continue
            chunk.append(rec.value)
            size += len(rec.value)
            if size >= budget_bytes:
                yield chunk
                chunk, size = [], 0
        if chunk:
            yield chunk

    yield from _merged(good_chunks(), spill_dir, out_size)
