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
from operator import attrgetter
from typing import Any, Optional

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute  # noqa: F401 - used through Arrow arrays; imported here, not on the first batch
import pyarrow.json as pa_json

from pypi_pulse.countries import country_or_unknown
from pypi_pulse.dataflow.columns import Coded
from pypi_pulse.dataflow.limits import DEFAULT_LIMITS, ParseLimits, countries_mapped, folded_count, objects_only
from pypi_pulse.dataflow.partials import BatchPartial, Columns, partial_of, sharded
from pypi_pulse.dataflow.seconds import arrow_seconds, seconds
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.event_fields import arrow_schema, reader_struct
from pypi_pulse.events import BadTimestamp, epoch_second
from pypi_pulse.names import normalize
from pypi_pulse.rules import BY_NAME, FILE_DIMS, READ_FIELDS, VIEW_DIMS, VIEW_FIELDS, python_minor
from pypi_pulse.rules import view as _view

__all__ = ["FILE_DIMS", "VIEW_DIMS", "python_minor"]  # the rules' names, where the dataflow's callers look


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


def _details_view(d) -> tuple:
    """The rollup categories of a details record, in VIEW_DIMS order."""
    if d is None:
        return _NO_DETAILS
    return _view(*(getter(d) for getter in _VIEW_GETTERS))


# ---- reduction ---------------------------------------------------------------------------------------------------
def parse_batch(raw: RawBatch, limits: ParseLimits = DEFAULT_LIMITS) -> BatchPartial:
    """The batch as one partial aggregate (dataflow/partials.py)."""
    return partial_of(parse_columns(raw, limits))


def parse_shards(raw: RawBatch, shards: int, limits: ParseLimits = DEFAULT_LIMITS) -> list[BatchPartial]:
    """The batch as one partial aggregate per shard of projects (dataflow/partials.py `sharded`)."""
    return sharded(parse_columns(raw, limits), shards)


def parse_columns(raw: RawBatch, limits: ParseLimits = DEFAULT_LIMITS) -> Columns:
    """Three tiers, each exact: Arrow columns for the usual batch; msgspec structs for a batch Arrow will not
    take whole (numeric timestamps, mixed timestamp layouts); one event at a time for a batch holding a bad event,
    so that each gets its own dead-letter reason. An event outside `limits` (dataflow/limits.py) is a bad event."""
    if raw.values:
        columns = _columnar(raw, limits)
        if columns is not None:
            return columns
    events, dead = _decode(raw.event_values())
    if not dead and events:
        columns = _whole_batch(raw, events, limits)
        if columns is not None:
            return columns
    return _each_event(raw, events, dead, limits)


# The fields the columnar tier reads, as Arrow types (the project from the top-level column only: a batch without
# it takes the msgspec tiers). A value of another JSON type fails the whole batch, which then takes the msgspec
# tiers: Arrow never accepts an event msgspec would reject.
_ARROW_SCHEMA = arrow_schema(f for f in READ_FIELDS if f != "file.project")
_ARROW_PARSE = pa_json.ParseOptions(explicit_schema=_ARROW_SCHEMA, unexpected_field_behavior="ignore")


def _columnar(raw: RawBatch, limits: ParseLimits = DEFAULT_LIMITS) -> Optional[Columns]:
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
    secs = arrow_seconds(table.column("timestamp").combine_chunks())
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
    return Columns(
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


def _whole_batch(raw: RawBatch, events: list, limits: ParseLimits = DEFAULT_LIMITS) -> Optional[Columns]:
    """Columns by C-level maps over the batch; None when some event needs the per-event path."""
    projects = list(map(_PROJECT, events))
    if None in projects or "" in projects:
        return None
    secs = seconds(list(map(_TS, events)))
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
    return Columns(
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


def _each_event(raw: RawBatch, events: list, dead: list, limits: ParseLimits = DEFAULT_LIMITS) -> Columns:
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
    return Columns(
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
