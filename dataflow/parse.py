"""Turning a raw Kafka batch into per-event columns: the only per-event work in the dataflow.

Why it looks the way it does (measured on the 2-core benchmark machine, see docs/performance.md):
- A batch is decoded by msgspec in one C call (falling back to per-message decoding to isolate bad messages) into
  frozen, GC-untracked structs holding only the fields pypi-pulse reads. The cyclic garbage collector walking
  millions of freshly decoded, tracked objects cost more than the JSON parsing itself, and the fields we never
  read (distro, openssl...) cost half of the decoding.
- No Python loop runs per event: per-event values are pulled out with C-level `map`/`attrgetter`, timestamps of
  one second share their first 19 characters so only a batch's distinct seconds are parsed, and records
  (`details`, `file`) are turned into rollup categories once per distinct record.
- The result is columns split by second and by rollup minute; the clock counts them into its state with
  `Counter.update` (C), so nothing is counted twice and Python code runs per distinct key, not per event.
A batch with anything unusual (a bad event, a missing project, a bad timestamp) takes the per-event path instead,
which gives every such event its dead-letter reason. Every event is accounted for: counted, or dead-lettered.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from itertools import compress
from operator import attrgetter, itemgetter
from typing import NamedTuple, Optional, Union

import msgspec
import numpy as np

from pypi_pulse.countries import ALPHA2, UNKNOWN
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.events import MIRROR_INSTALLERS, BadTimestamp, epoch_second
from pypi_pulse.names import normalize

BUCKET_S = 60  # rollups are sealed per minute of event time

# Rollup dimensions read from `details`, in the order of a details view tuple.
VIEW_DIMS = ("installer", "python_minor", "python_major", "system", "cpu", "ci")
FILE_DIMS = ("file_type", "version")


class MinuteColumns(NamedTuple):
    """One rollup minute of a batch, as parallel per-event columns."""

    all_projects: list  # every event, mirrors included (`with_mirrors`)
    projects: list  # the rest: mirror downloads are left out of every other dimension
    countries: list
    views: list  # (installer, python_minor, python_major, system, cpu, ci) per event
    file_types: list
    versions: list


@dataclass
class BatchPartial:
    partition: int
    n_partitions: int
    next_offset: int
    caught_up: bool
    final: bool
    wall: float
    consumed: int
    max_second: Optional[int]
    country_counts: Counter  # (second, country) -> n
    second_projects: dict  # second -> list of the (normalised) project of each event
    minutes: dict  # minute -> MinuteColumns
    dead: list = field(default_factory=list)  # (original bytes, reason)

    @property
    def project_counts(self) -> Counter:
        """(second, project) -> n."""
        return Counter({(s, p): n for s, ps in self.second_projects.items() for p, n in Counter(ps).items()})

    @property
    def rollups(self) -> dict:
        """minute -> {(day, project, dimension, category): n}, as the clock would seal this batch alone."""
        from pypi_pulse.dataflow.clock import MinuteRollup

        out = {}
        for minute, cols in self.minutes.items():
            r = MinuteRollup()
            r.add(cols)
            out[minute] = r.final(day_of(minute))
        return out


_day_cache: dict[int, str] = {}
_minor_cache: dict[str, Optional[str]] = {}
_SYSTEMS = {"Darwin", "Linux", "Windows"}
_LEADING_DIGITS = re.compile(r"\d+")


def day_of(second: int) -> str:
    d = second // 86400
    s = _day_cache.get(d)
    if s is None:
        import datetime as _dt

        s = _day_cache[d] = (_dt.date(1970, 1, 1) + _dt.timedelta(days=d)).isoformat()
    return s


def python_minor(v: Optional[str]) -> Optional[str]:
    """First two numeric components of `details.python` (`3.12.1` → `3.12`), None if there are not two."""
    if v is None:
        return None
    m = _minor_cache.get(v)
    if m is None and v not in _minor_cache:
        parts = v.split(".", 2)
        digits = _LEADING_DIGITS.match(parts[1]) if len(parts) >= 2 and parts[0].isdigit() else None
        m = f"{parts[0]}.{digits.group()}" if digits else None
        if len(_minor_cache) < 100_000:
            _minor_cache[v] = m
    return m


# ---- decoding --------------------------------------------------------------------------------------------------
# The fields of pypi_pulse.events.Download that pypi-pulse reads, with the same types (a wrong type is an invalid
# event); other fields are skipped unread. Frozen with a cached hash: distinct records are looked up in dicts.


class _Named(msgspec.Struct, frozen=True, gc=False):
    name: Optional[str] = None


class _Details(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    installer: Optional[_Named] = None
    python: Optional[str] = None
    system: Optional[_Named] = None
    cpu: Optional[str] = None
    ci: Optional[bool] = None


class _File(msgspec.Struct, frozen=True, gc=False, cache_hash=True):
    project: Optional[str] = None
    version: Optional[str] = None
    type: Optional[str] = None


class _Download(msgspec.Struct, frozen=True, gc=False):
    timestamp: Union[str, int, float, None] = None
    country_code: Optional[str] = None
    project: Optional[str] = None
    file: Optional[_File] = None
    details: Optional[_Details] = None


_DECODER = msgspec.json.Decoder(_Download)
_BATCH_DECODER = msgspec.json.Decoder(list[_Download])

_TS = attrgetter("timestamp")
_CC = attrgetter("country_code")
_PROJECT = attrgetter("project")
_DETAILS = attrgetter("details")
_FILE = attrgetter("file")
_FILE_TYPE = attrgetter("type")
_VERSION = attrgetter("version")
_UTC_TAILS = (" UTC", "Z", "+00:00", "")


def _decode(values: list[bytes]) -> tuple[list, list]:
    if values:
        try:
            events = _BATCH_DECODER.decode(b"[" + b",".join(values) + b"]")
            if len(events) == len(values):
                return events, []
        except msgspec.DecodeError:
            pass
    events, dead = [], []
    for v in values:
        try:
            events.append(_DECODER.decode(v))
        except msgspec.DecodeError as exc:
            dead.append((v, f"invalid event: {exc}"))
            events.append(None)
    return events, dead


_DOT, _ZERO, _NINE = ord("."), ord("0"), ord("9")


def _seconds(ts: list) -> Optional[np.ndarray]:
    """The UTC second of every timestamp, or None if one of them is unreadable (the per-event path says which)."""
    try:
        secs = _seconds_by_prefix(ts)
        return secs if secs is not None else np.fromiter(map(epoch_second, ts), np.int64, len(ts))
    except BadTimestamp:
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
    if not any(_utc_layout(chars, tail) for tail in _UTC_TAILS):
        return None
    prefixes = chars[:, :19]
    starts = np.flatnonzero(np.concatenate(([True], (prefixes[1:] != prefixes[:-1]).any(axis=1))))
    if len(starts) > len(ts) // 8:
        return None  # not in time order: per-event parsing with its cache is as fast
    run_secs = np.fromiter((epoch_second(ts[i][:19]) for i in starts.tolist()), np.int64, len(starts))
    return np.repeat(run_secs, np.diff(np.append(starts, len(ts))))


def _utc_layout(chars: np.ndarray, tail: str) -> bool:
    end = chars.shape[1] - len(tail)
    if end < 19 or (tail and not (chars[:, end:] == np.frombuffer(tail.encode(), np.uint8)).all()):
        return False
    if end == 19:
        return True
    fraction = chars[:, 20:end]
    return end > 20 and bool((chars[:, 19] == _DOT).all()) and bool(((fraction >= _ZERO) & (fraction <= _NINE)).all())


def _system_category(system: Optional[str]) -> Optional[str]:
    return system if system in _SYSTEMS else (None if system is None else "other")


_NO_DETAILS = (None,) * len(VIEW_DIMS)
_NO_FILE = _File()


def _details_view(d) -> tuple:
    """The rollup categories of a details record, in VIEW_DIMS order."""
    if d is None:
        return _NO_DETAILS
    minor = python_minor(d.python)
    return (d.installer.name if d.installer is not None else None, minor, None if minor is None else minor.split(".", 1)[0],
            _system_category(d.system.name if d.system is not None else None), d.cpu, "true" if d.ci else None)




# ---- reduction ---------------------------------------------------------------------------------------------------
def parse_batch(raw: RawBatch) -> BatchPartial:
    events, dead = _decode(raw.values)
    if not dead and events:
        partial = _whole_batch(raw, events)
        if partial is not None:
            return partial
    return _each_event(raw, events, dead)


def _whole_batch(raw: RawBatch, events: list) -> Optional[BatchPartial]:
    """Columns by C-level maps over the batch; None when some event needs the per-event path."""
    projects = list(map(_PROJECT, events))
    if None in projects or "" in projects:
        return None
    secs = _seconds(list(map(_TS, events)))
    if secs is None:
        return None
    norm = {p: normalize(p) for p in set(projects)}
    projects = list(map(norm.__getitem__, projects))
    ccs = list(map(_CC, events))
    cc_of = {c: (c if c in ALPHA2 else UNKNOWN) for c in set(ccs)}
    if any(k != v for k, v in cc_of.items()):
        ccs = list(map(cc_of.__getitem__, ccs))
    details = list(map(_DETAILS, events))
    view_of = {d: _details_view(d) for d in set(details)}
    files = list(map(_FILE, events))
    if None in files:
        files = [_NO_FILE if f is None else f for f in files]
    return _partial(raw, secs, projects, ccs, list(map(view_of.__getitem__, details)),
                    list(map(_FILE_TYPE, files)), list(map(_VERSION, files)), [])


def _each_event(raw: RawBatch, events: list, dead: list) -> BatchPartial:
    """One event at a time: for batches holding bad events, each dead-lettered with its own reason."""
    values = raw.values
    secs, projects, ccs, views, ftypes, versions = [], [], [], [], [], []
    for i, e in enumerate(events):
        if e is None:
            continue
        try:
            sec = epoch_second(e.timestamp)
        except BadTimestamp as exc:
            dead.append((values[i], str(exc)))
            continue
        f = e.file
        project = e.project or (f.project if f is not None else None)
        if not project:
            dead.append((values[i], "missing project"))
            continue
        cc = e.country_code
        secs.append(sec)
        projects.append(normalize(project))
        ccs.append(cc if cc in ALPHA2 else UNKNOWN)
        views.append(_details_view(e.details))
        ftypes.append(f.type if f is not None else None)
        versions.append(f.version if f is not None else None)
    return _partial(raw, secs, projects, ccs, views, ftypes, versions, dead)


def _partial(raw: RawBatch, secs, projects: list, ccs: list, views: list, ftypes: list, versions: list,
             dead: list) -> BatchPartial:
    """Split the columns by second (windows) and by minute (rollups); sorted by second first unless (as usual)
    they already are."""
    country_counts: Counter = Counter()
    second_projects: dict = {}
    minutes: dict = {}
    secs = np.asarray(secs, dtype=np.int64)
    if len(secs):
        steps = np.diff(secs)
        if (steps < 0).any():
            order = np.argsort(secs, kind="stable")
            secs = secs[order]
            order = order.tolist()
            projects, ccs, views, ftypes, versions = (
                [*map(col.__getitem__, order)] for col in (projects, ccs, views, ftypes, versions))
            steps = np.diff(secs)
        bounds = [0, *(np.flatnonzero(steps) + 1).tolist(), len(secs)]
        distinct = secs[bounds[:-1]].tolist()
        for s, lo, hi in zip(distinct, bounds, bounds[1:]):
            second_projects[s] = projects[lo:hi]
            country_counts.update({(s, cc): n for cc, n in Counter(ccs[lo:hi]).items()})
        minute_starts = [i for i, s in enumerate(distinct) if i == 0 or s // BUCKET_S != distinct[i - 1] // BUCKET_S]
        minute_starts.append(len(distinct))
        for a, b in zip(minute_starts, minute_starts[1:]):
            lo, hi = bounds[a], bounds[b]
            minute = distinct[a] - distinct[a] % BUCKET_S
            minutes[minute] = _minute_columns(projects[lo:hi], ccs[lo:hi], views[lo:hi], ftypes[lo:hi], versions[lo:hi])
    return BatchPartial(raw.partition, raw.n_partitions, raw.next_offset, raw.caught_up, raw.final, raw.wall,
                        len(raw.values), int(secs[-1]) if len(secs) else None, country_counts, second_projects, minutes,
                        dead)


def _minute_columns(projects: list, ccs: list, views: list, ftypes: list, versions: list) -> MinuteColumns:
    mirror_of = {v: v[0] in MIRROR_INSTALLERS for v in set(views)}
    if not any(mirror_of.values()):
        return MinuteColumns(projects, projects, ccs, views, ftypes, versions)
    keep = [not m for m in map(mirror_of.__getitem__, views)]
    return MinuteColumns(projects, *(list(compress(col, keep)) for col in (projects, ccs, views, ftypes, versions)))
