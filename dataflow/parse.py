"""Turning a raw Kafka batch into partial aggregates: the only per-event work in the dataflow.

A batch is decoded by msgspec in one C call (falling back to per-message decoding to isolate bad messages); then
a single loop reduces events to (second, country) and (second, project) counts and to the rollup dimensions. Every
event is accounted for: counted in a window, or dead-lettered with the reason.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Optional

import msgspec

from pypi_pulse.countries import ALPHA2, UNKNOWN
from pypi_pulse.dataflow.source import RawBatch
from pypi_pulse.events import BATCH_DECODER, DECODER, MIRROR_INSTALLERS, BadTimestamp, epoch_second
from pypi_pulse.names import normalize

BUCKET_S = 60  # rollups are sealed per minute of event time


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
    project_counts: Counter  # (second, project) -> n
    rollups: dict  # minute -> Counter[(day, project, dimension, category)]
    dead: list = field(default_factory=list)  # (original bytes, reason)


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


def _decode(values: list[bytes]) -> tuple[list, list]:
    if values:
        try:
            events = BATCH_DECODER.decode(b"[" + b",".join(values) + b"]")
            if len(events) == len(values):
                return events, []
        except msgspec.DecodeError:
            pass
    events, dead = [], []
    for v in values:
        try:
            events.append(DECODER.decode(v))
        except msgspec.DecodeError as exc:
            dead.append((v, f"invalid event: {exc}"))
            events.append(None)
    return events, dead


def parse_batch(raw: RawBatch) -> BatchPartial:
    events, dead = _decode(raw.values)
    values = raw.values
    secs_c: list = []
    secs_p: list = []
    rows: list = []
    mirrors: list = []
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
        project = normalize(project)
        cc = e.country_code
        if cc not in ALPHA2:
            cc = UNKNOWN
        secs_c.append((sec, cc))
        secs_p.append((sec, project))
        d = e.details
        installer = d.installer.name if d is not None and d.installer is not None else None
        if installer in MIRROR_INSTALLERS:
            mirrors.append((sec - sec % BUCKET_S, project))
            continue
        if d is not None:
            system = d.system.name if d.system is not None else None
            rows.append((sec - sec % BUCKET_S, project, cc, installer, d.python, system, d.cpu,
                         f.type if f is not None else None, f.version if f is not None else None, d.ci))
        else:
            rows.append((sec - sec % BUCKET_S, project, cc, None, None, None, None,
                         f.type if f is not None else None, f.version if f is not None else None, None))
    country_counts = Counter(secs_c)
    project_counts = Counter(secs_p)
    rollups: dict = {}
    for (minute, project, cc, installer, py, system, cpu, ftype, version, ci), n in Counter(rows).items():
        day = day_of(minute)
        c = rollups.get(minute)
        if c is None:
            c = rollups[minute] = Counter()
        c[(day, project, "country", cc)] += n
        c[(day, project, "installer", installer)] += n
        c[(day, project, "python_minor", python_minor(py))] += n
        c[(day, project, "system", system if system in _SYSTEMS else (None if system is None else "other"))] += n
        c[(day, project, "cpu", cpu)] += n
        c[(day, project, "file_type", ftype)] += n
        c[(day, project, "version", version)] += n
        c[(day, project, "ci", "true" if ci else None)] += n
    for (minute, project), n in Counter(mirrors).items():
        c = rollups.get(minute)
        if c is None:
            c = rollups[minute] = Counter()
        c[(day_of(minute), project, "mirror", None)] += n
    max_second = max((s for s, _ in country_counts), default=None)
    return BatchPartial(raw.partition, raw.n_partitions, raw.next_offset, raw.caught_up, raw.final, raw.wall,
                        len(values), max_second, country_counts, project_counts, rollups, dead)
