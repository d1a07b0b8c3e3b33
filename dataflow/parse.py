"""Turning a raw Kafka batch into per-event columns: the only per-event work in the dataflow.

Why it looks the way it does (measured on the 2-core benchmark machine with the scripts in benchmarks/):
- The usual batch is read by Arrow's JSON reader (C++) straight into columns of the fields pypi-pulse reads, and
  each column becomes integer codes into a table of its distinct values (`dataflow/columns.Coded`): no Python
  object is made per event, and normalising a name, mapping a country or reading a `details` record happens once
  per distinct value. Parse and clock together went from 63,000 to 165,000 events/s on one core with this tier
  (`benchmarks/state_size.py`).
- A batch Arrow must not take whole (numeric or offset timestamps, a message spanning lines) is decoded by
  msgspec in one C call into frozen, GC-untracked structs holding only the fields we read; columns are pulled out
  with C-level `map`/`attrgetter`.
- Timestamps of one second share their first 19 characters: a batch's timestamps are checked as one numpy byte
  matrix and only its distinct prefixes are parsed.
A batch with anything unusual (a bad event, a missing project, a bad timestamp) takes the per-event path instead,
which gives every such event its dead-letter reason. Every event is accounted for: counted, or dead-lettered.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any, NamedTuple, Optional

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - used through Arrow arrays; imported here, not on the first batch
import pyarrow.json as pa_json

from pypi_pulse.countries import country_or_unknown
from pypi_pulse.dataflow.columns import Coded
from pypi_pulse.dataflow.limits import DEFAULT_LIMITS, ParseLimits, countries_mapped, folded_count, objects_only
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.event_fields import arrow_schema, reader_struct
from pypi_pulse.events import UTC_SUFFIXES, BadTimestamp, epoch_second
from pypi_pulse.names import normalize
from pypi_pulse.rules import BY_NAME, FILE_DIMS, READ_FIELDS, VIEW_DIMS, VIEW_FIELDS, is_mirror, python_minor
from pypi_pulse.rules import view as _view

BUCKET_S = 60  # rollups are sealed per minute of event time

__all__ = ["FILE_DIMS", "VIEW_DIMS", "python_minor"]  # the rules' names, where the dataflow's callers look


class MinuteColumns(NamedTuple):
    """One rollup minute of a batch, as parallel per-event coded columns."""

    all_projects: Coded  # every event, mirrors included (`with_mirrors`)
    projects: Coded  # the rest: mirror downloads are left out of every other dimension (same table)
    countries: Coded
    views: Coded  # (installer, python_minor, python_major, system, cpu, ci) per event
    file_types: Coded
    versions: Coded


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
    second_projects: dict  # second -> Coded (normalised) project of each event
    minutes: dict  # minute -> MinuteColumns
    dead: list = field(default_factory=list)  # (original bytes, reason)
    unknown_countries: int = 0  # events whose null, empty or malformed country code was counted as `ZZ`


_day_cache: dict[int, str] = {}


def day_of(second: int) -> str:
    d = second // 86400
    s = _day_cache.get(d)
    if s is None:
        import datetime as _dt

        s = _day_cache[d] = (_dt.date(1970, 1, 1) + _dt.timedelta(days=d)).isoformat()
    return s


# ---- decoding --------------------------------------------------------------------------------------------------
# The fields of pypi_pulse.events.Download that the rules read (pypi_pulse.rules.READ_FIELDS), with the same types
# (a wrong type is an invalid event); other fields are skipped unread. Frozen, untracked by the GC, records with a
# cached hash: distinct records are looked up in dicts.
_Download = reader_struct(READ_FIELDS, "_Download")
_File = next(f.type for f in msgspec.structs.fields(_Download) if f.name == "file").__args__[0]
_DECODER: msgspec.json.Decoder[Any] = msgspec.json.Decoder(_Download)
_BATCH_DECODER: msgspec.json.Decoder[list[Any]] = msgspec.json.Decoder(list[_Download])  # type: ignore[valid-type]  # a struct made at import

_TS = attrgetter("timestamp")
_CC = attrgetter("country_code")
_PROJECT = attrgetter("project")
_DETAILS = attrgetter("details")
_FILE = attrgetter("file")


def _file_field(dim: str) -> str:
    """The attribute of `file` a file dimension reads (pypi_pulse.rules: `file.<name>`)."""
    field = BY_NAME[dim].field
    assert field is not None and field.startswith("file."), dim
    return field.split(".", 1)[1]


_FILE_TYPE, _VERSION = (attrgetter(_file_field(d)) for d in FILE_DIMS)
_UTC_TAILS = (*UTC_SUFFIXES, "")  # a prefix decides the second of a UTC timestamp, or of one with no offset


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


_NO_DETAILS = (None,) * len(VIEW_DIMS)
_NO_FILE = _File()


def _record_getter(path: str):
    """A field of a decoded `details`/`file` record by its dotted path below the record (None under a null)."""
    names = path.split(".")[1:]

    def get(record):
        for name in names:
            record = getattr(record, name)
            if record is None:
                return None
        return record

    return get


_VIEW_GETTERS = tuple(map(_record_getter, VIEW_FIELDS))
_INSTALLER = VIEW_DIMS.index("installer")  # a view's installer says whether it is a mirror's


def _details_view(d) -> tuple:
    """The rollup categories of a details record, in VIEW_DIMS order."""
    if d is None:
        return _NO_DETAILS
    return _view(*(getter(d) for getter in _VIEW_GETTERS))


# ---- reduction ---------------------------------------------------------------------------------------------------
def parse_batch(raw: RawBatch, limits: ParseLimits = DEFAULT_LIMITS) -> BatchPartial:
    """Three tiers, each exact: Arrow columns for the usual batch; msgspec structs for a batch Arrow will not
    take whole (numeric timestamps, mixed timestamp layouts); one event at a time for a batch holding a bad event,
    so that each gets its own dead-letter reason. An event outside `limits` (dataflow/limits.py) is a bad event."""
    if raw.values:
        partial = _columnar(raw, limits)
        if partial is not None:
            return partial
    events, dead = _decode(raw.event_values())
    if not dead and events:
        partial = _whole_batch(raw, events, limits)
        if partial is not None:
            return partial
    return _each_event(raw, events, dead, limits)


# The fields the columnar tier reads, as Arrow types (the project from the top-level column only: a batch without
# it takes the msgspec tiers). A value of another JSON type fails the whole batch, which then takes the msgspec
# tiers: Arrow never accepts an event msgspec would reject.
_ARROW_SCHEMA = arrow_schema(f for f in READ_FIELDS if f != "file.project")
_ARROW_PARSE = pa_json.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="ignore")


def _columnar(raw: RawBatch, limits: ParseLimits = DEFAULT_LIMITS) -> Optional[BatchPartial]:
    """The batch parsed by Arrow's JSON reader (C++, two threads) straight into columns: no Python object per
    event. Measured 2.4 times faster than decoding to msgspec structs and pulling columns out of them. None when
    the batch needs another tier."""
    values, n = raw.values, raw.n_events
    data = b"\n".join(values)
    if raw.pack_sizes is not None:  # a pack's lines were counted when it was read: only single events can span lines
        lines_line_up = not any(b"\n" in v for v, k in zip(values, raw.pack_sizes) if k == 1)
        breaks = _line_breaks(data) if lines_line_up else None
    else:
        breaks = _line_breaks(data)
        lines_line_up = len(breaks) == n - 1
    if not lines_line_up:  # one event per line is what makes rows line up with events
        data = b"\n".join(map(bytes.strip, values))  # a trailing newline is JSON whitespace
        breaks = _line_breaks(data)
        if len(breaks) != n - 1:
            return None  # a value spanning lines
    assert breaks is not None  # found above whenever the lines line up
    if not objects_only(data, breaks):
        return None
    try:
        table = pa_json.read_json(
            pa.py_buffer(data),
            parse_options=_ARROW_PARSE,
            read_options=pa_json.ReadOptions(block_size=max(1 << 20, len(data) // 2 + 1)),
        )
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return None
    if table.num_rows != n:
        return None  # a blank message: the per-event tier dead-letters it
    project = table.column("project").combine_chunks()
    if project.null_count or not len(project):
        return None
    secs = _arrow_seconds(table.column("timestamp").combine_chunks())
    if secs is None or not limits.seconds_within(secs):
        return None
    project = project.dictionary_encode()
    names = project.dictionary.to_pylist()
    if "" in names or not limits.names_within(names):
        return None
    projects = Coded.mapped(_indices(project), [normalize(p) for p in names])
    country = table.column("country_code").combine_chunks().dictionary_encode(null_encoding="encode")
    mapped, folded = countries_mapped(country.dictionary.to_pylist())
    country_codes = _indices(country)
    countries = Coded.mapped(country_codes, mapped)
    fields = _arrow_fields(table, ("details", "file"))
    views = _views([fields[f] for f in VIEW_FIELDS])
    file_type, file_version = (_coded_arrow(fields[BY_NAME[d].field]) for d in FILE_DIMS)
    return _partial(
        raw, secs, projects, countries, views, file_type, file_version, [], folded_count(country_codes, folded)
    )


def _arrow_fields(table: pa.Table, records: tuple) -> dict:
    """{dotted path: column} of every value inside the named record columns, each record's nulls pushed into its
    fields (a null `details` makes its python null)."""
    out = {}

    def walk(column: pa.Array, path: str) -> None:
        if pa.types.is_struct(column.type):
            for f, child in zip(column.type, column.flatten()):
                walk(child, f"{path}.{f.name}")
        else:
            out[path] = column

    for name in records:
        walk(table.column(name).combine_chunks(), name)
    return out


def _line_breaks(data: bytes) -> np.ndarray:
    """Where a batch's newlines are: numpy finds them three times faster than `bytes.count` counts them (3.4 against
    10.4 ms for 20,000 events of 690 bytes), a tenth of the cost of Arrow's parse, paid on every batch."""
    return np.flatnonzero(np.frombuffer(data, np.uint8) == 10)


def _indices(encoded: pa.DictionaryArray) -> np.ndarray:
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)


def _coded_arrow(column: pa.Array) -> Coded:
    encoded = column.dictionary_encode(null_encoding="encode")
    return Coded.mapped(_indices(encoded), encoded.dictionary.to_pylist())


def _views(fields: list) -> Coded:
    """Each event's details view (VIEW_DIMS categories), computed once per distinct combination of the five
    `details` fields it depends on."""
    encoded = [f.dictionary_encode(null_encoding="encode") for f in fields]
    combined = np.zeros(len(fields[0]), dtype=np.int64)
    size = 1
    for e in encoded:
        n = max(len(e.dictionary), 1)
        combined = combined * n + _indices(e)
        size *= n
        if size > 1 << 40:  # keep the mixed radix within int64: renumber what is distinct so far
            distinct, combined = np.unique(combined, return_inverse=True)
            size = len(distinct)
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    columns = [e.dictionary.to_pylist() for e in encoded]
    indices = [_indices(e)[first].tolist() for e in encoded]
    table = [_view(*(col[i] for col, i in zip(columns, row))) for row in zip(*indices)]
    return Coded.mapped(inverse.reshape(-1), table)


def _arrow_seconds(ts: pa.Array) -> Optional[np.ndarray]:
    """`_seconds_by_prefix` on an Arrow string column, reading its data buffer directly (no Python strings)."""
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


def _whole_batch(raw: RawBatch, events: list, limits: ParseLimits = DEFAULT_LIMITS) -> Optional[BatchPartial]:
    """Columns by C-level maps over the batch; None when some event needs the per-event path."""
    projects = list(map(_PROJECT, events))
    if None in projects or "" in projects:
        return None
    secs = _seconds(list(map(_TS, events)))
    if secs is None or not limits.seconds_within(secs):
        return None
    distinct = set(projects)
    if not limits.names_within(distinct):
        return None
    norm = {p: normalize(p) for p in distinct}
    projects = list(map(norm.__getitem__, projects))
    ccs = list(map(_CC, events))
    distinct_ccs = list(set(ccs))
    mapped, folded = countries_mapped(distinct_ccs)
    unknown = 0
    if folded:
        unknown = sum(map(Counter(ccs).__getitem__, (distinct_ccs[i] for i in folded)))
    if any(k != v for k, v in zip(distinct_ccs, mapped)):
        cc_of = dict(zip(distinct_ccs, mapped))
        ccs = list(map(cc_of.__getitem__, ccs))
    details = list(map(_DETAILS, events))
    view_of = {d: _details_view(d) for d in set(details)}
    files = list(map(_FILE, events))
    if None in files:
        files = [_NO_FILE if f is None else f for f in files]
    return _partial(
        raw,
        secs,
        Coded.of(projects),
        Coded.of(ccs),
        Coded.of(list(map(view_of.__getitem__, details))),
        Coded.of(list(map(_FILE_TYPE, files))),
        Coded.of(list(map(_VERSION, files))),
        [],
        unknown,
    )


def _each_event(raw: RawBatch, events: list, dead: list, limits: ParseLimits = DEFAULT_LIMITS) -> BatchPartial:
    """One event at a time: for batches holding bad events, each dead-lettered with its own reason."""
    values = raw.event_values()
    secs, projects, ccs, views, ftypes, versions = [], [], [], [], [], []
    unknown = 0
    now = time.time()  # the wall clock the event times are bounded by (`RawBatch.wall` is when it was read)
    for i, e in enumerate(events):
        if e is None:
            continue
        try:
            sec = epoch_second(e.timestamp)
        except BadTimestamp as exc:
            dead.append((values[i], str(exc)))
            continue
        reason = limits.time_reason(sec, now)
        if reason is not None:
            dead.append((values[i], reason))
            continue
        f = e.file
        project = e.project or (f.project if f is not None else None)
        if not project:
            dead.append((values[i], "missing project"))
            continue
        reason = limits.project_reason(project)
        if reason is not None:
            dead.append((values[i], reason))
            continue
        cc = e.country_code
        counted_as = country_or_unknown(cc)
        unknown += counted_as != cc
        secs.append(sec)
        projects.append(normalize(project))
        ccs.append(counted_as)
        views.append(_details_view(e.details))
        ftypes.append(_FILE_TYPE(f) if f is not None else None)
        versions.append(_VERSION(f) if f is not None else None)
    return _partial(
        raw,
        secs,
        Coded.of(projects),
        Coded.of(ccs),
        Coded.of(views),
        Coded.of(ftypes),
        Coded.of(versions),
        dead,
        unknown,
    )


def _partial(
    raw: RawBatch,
    secs,
    projects: Coded,
    ccs: Coded,
    views: Coded,
    ftypes: Coded,
    versions: Coded,
    dead: list,
    unknown_countries: int = 0,
) -> BatchPartial:
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
            projects, ccs, views, ftypes, versions = (c.take(order) for c in (projects, ccs, views, ftypes, versions))
            steps = np.diff(secs)
        bounds = [0, *(np.flatnonzero(steps) + 1).tolist(), len(secs)]
        distinct = secs[bounds[:-1]].tolist()
        for s, lo, hi in zip(distinct, bounds, bounds[1:]):
            second_projects[s] = projects.take(slice(lo, hi))
            country_counts.update({(s, cc): n for cc, n in ccs.take(slice(lo, hi)).counts().items()})
        minute_starts = [i for i, s in enumerate(distinct) if i == 0 or s // BUCKET_S != distinct[i - 1] // BUCKET_S]
        minute_starts.append(len(distinct))
        for a, b in zip(minute_starts, minute_starts[1:]):
            rows = slice(bounds[a], bounds[b])
            minute = distinct[a] - distinct[a] % BUCKET_S
            minutes[minute] = _minute_columns(*(c.take(rows) for c in (projects, ccs, views, ftypes, versions)))
    return BatchPartial(
        raw.partition,
        raw.n_partitions,
        raw.next_offset,
        raw.caught_up,
        raw.final,
        raw.wall,
        raw.n_events,
        int(secs[-1]) if len(secs) else None,
        country_counts,
        second_projects,
        minutes,
        dead,
        unknown_countries,
    )


def _minute_columns(projects: Coded, ccs: Coded, views: Coded, ftypes: Coded, versions: Coded) -> MinuteColumns:
    mirror_views = np.fromiter((is_mirror(v[_INSTALLER]) for v in views.table), bool, len(views.table))
    if not mirror_views.any():
        return MinuteColumns(projects, projects, ccs, views, ftypes, versions)
    keep = ~mirror_views[views.codes]
    return MinuteColumns(projects, *(c.take(keep) for c in (projects, ccs, views, ftypes, versions)))
