"""The UTC second of each timestamp of a batch, vectorised: the batch form of pypi_pulse.events.epoch_second, the
one timestamp parser, which still parses each distinct second (only the check that a prefix decides the second is
done on the whole batch at once, as a numpy byte matrix).

Timestamps of one second share their first 19 characters, and events arrive nearly in time order: only the first
timestamp of each run of equal prefixes is parsed.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import pyarrow as pa

from pypi_pulse.events import UTC_SUFFIXES, BadTimestamp, epoch_second

_UTC_TAILS = (*UTC_SUFFIXES, "")  # a prefix decides the second of a UTC timestamp, or of one with no offset


_DOT, _ZERO, _NINE = ord("."), ord("0"), ord("9")


def seconds(ts: list) -> Optional[np.ndarray]:
    """The UTC second of every timestamp, or None if one of them is unreadable (the per-event path says which)."""
    try:
        secs = _seconds_by_prefix(ts)
        return secs if secs is not None else np.fromiter(map(epoch_second, ts), np.int64, len(ts))
    except (BadTimestamp, OverflowError):  # a second beyond int64 (1e300) is out of bounds: the per-event path says so
        return None


def _seconds_by_prefix(ts: list) -> Optional[np.ndarray]:
    """Seconds read from each timestamp's first 19 characters, if that prefix alone decides its UTC second for
    the whole batch: every timestamp a string of one length laid out `YYYY-MM-DD?HH:MM:SS[.digits](UTC suffix)`,
    as BigQuery exports are. The batch is checked as one (n, length) byte matrix with numpy, and only the first
    timestamp of each run of equal prefixes (events arrive nearly in time order) is parsed. None: parse each."""
    if set(map(type, ts)) != {str}:
        return None
    lengths = set(map(len, ts))
    if len(lengths) != 1:
        return None
    width = lengths.pop()
    joined = "".join(ts)
    if width < 19 or not joined.isascii():
        return None
    chars = np.frombuffer(joined.encode("ascii"), np.uint8).reshape(len(ts), width)
    return _seconds_of_matrix(chars)


def _seconds_of_matrix(chars: np.ndarray) -> Optional[np.ndarray]:
    """Seconds of timestamps laid out as the rows of an (n, width) byte matrix. Each distinct 19-byte prefix is
    parsed once: per run of equal prefixes when events come in time order (as they do), else via `np.unique`."""
    if not any(_utc_layout(chars, tail) for tail in _UTC_TAILS):
        return None
    prefixes = chars[:, :19]
    starts = np.flatnonzero(np.concatenate(([True], (prefixes[1:] != prefixes[:-1]).any(axis=1))))
    if len(starts) <= max(len(chars) // 8, 1):
        run_secs = np.fromiter((_prefix_second(bytes(prefixes[i])) for i in starts.tolist()), np.int64, len(starts))
        return np.repeat(run_secs, np.diff(np.append(starts, len(chars))))
    keys = _prefix_keys(prefixes)
    if keys is not None:  # out of order (exports are): one sort of integers, not of 19-byte strings
        _, first, inverse = np.unique(keys, return_index=True, return_inverse=True)
        secs = np.fromiter((_prefix_second(bytes(prefixes[i])) for i in first.tolist()), np.int64, len(first))
        return secs[inverse.reshape(-1)]
    distinct, inverse = np.unique(np.ascontiguousarray(prefixes).view("S19").reshape(-1), return_inverse=True)
    secs = np.fromiter(map(_prefix_second, distinct.tolist()), np.int64, len(distinct))
    return secs[inverse.reshape(-1)]


_DIGITS_AT = np.array([0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18])
_SEPARATORS_AT = np.array([4, 7, 10, 13, 16])
_DIGIT_WEIGHTS = 10 ** np.arange(len(_DIGITS_AT) - 1, -1, -1, dtype=np.int64)


def _prefix_keys(prefixes: np.ndarray) -> Optional[np.ndarray]:
    """`YYYYMMDDhhmmss` as one int64 per row, when every row has digits where a date's digits go and all rows
    share their separators: then equal keys are equal prefixes (and the prefix itself is still what is parsed)."""
    digits = prefixes[:, _DIGITS_AT]
    if not bool(((digits >= _ZERO) & (digits <= _NINE)).all()):
        return None
    separators = prefixes[:, _SEPARATORS_AT]
    if not bool((separators == separators[0]).all()):
        return None
    return (digits - _ZERO).astype(np.int64) @ _DIGIT_WEIGHTS


def _prefix_second(prefix: bytes) -> int:
    return epoch_second(prefix.decode("ascii", "replace"))


def _utc_layout(chars: np.ndarray, tail: str) -> bool:
    end = chars.shape[1] - len(tail)
    if end < 19 or (tail and not (chars[:, end:] == np.frombuffer(tail.encode(), np.uint8)).all()):
        return False
    if end == 19:
        return True
    fraction = chars[:, 20:end]
    return end > 20 and bool((chars[:, 19] == _DOT).all()) and bool(((fraction >= _ZERO) & (fraction <= _NINE)).all())


def arrow_seconds(ts: pa.Array) -> Optional[np.ndarray]:
    """`seconds` by prefix on an Arrow string column, reading its data buffer directly (no Python strings)."""
    if ts.null_count or not len(ts) or ts.type != pa.string():
        return None
    offsets = np.frombuffer(ts.buffers()[1], np.int32)[ts.offset : ts.offset + len(ts) + 1]
    widths = np.diff(offsets)
    width = int(widths[0])
    if width < 19 or (widths != width).any():
        return None
    chars = np.frombuffer(ts.buffers()[2], np.uint8)[offsets[0] : offsets[-1]].reshape(len(ts), width)
    try:
        return _seconds_of_matrix(chars)
    except BadTimestamp:
        return None  # the per-event tier says which event
