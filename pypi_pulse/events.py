"""The download event, defined once: the shape of a `bigquery-public-data.pypi.file_downloads` row.

Every part of pypi-pulse (producers, dataflow, tests, benchmarks) imports these types and helpers, so
that the wire format has exactly one definition. Decoding uses msgspec: the dataflow decodes a whole Kafka batch
in one C call (with structs derived from these in pypi_pulse/event_fields.py), and fields we do not model are
skipped without building Python objects.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Optional, Union

import msgspec


class Installer(msgspec.Struct, omit_defaults=True):
    name: Optional[str] = None
    version: Optional[str] = None


class Implementation(msgspec.Struct, omit_defaults=True):
    name: Optional[str] = None
    version: Optional[str] = None


class Libc(msgspec.Struct, omit_defaults=True):
    lib: Optional[str] = None
    version: Optional[str] = None


class Distro(msgspec.Struct, omit_defaults=True):
    name: Optional[str] = None
    version: Optional[str] = None
    id: Optional[str] = None
    libc: Optional[Libc] = None


class System(msgspec.Struct, omit_defaults=True):
    name: Optional[str] = None
    release: Optional[str] = None


class Details(msgspec.Struct, omit_defaults=True):
    installer: Optional[Installer] = None
    python: Optional[str] = None
    implementation: Optional[Implementation] = None
    distro: Optional[Distro] = None
    system: Optional[System] = None
    cpu: Optional[str] = None
    openssl_version: Optional[str] = None
    setuptools_version: Optional[str] = None
    rustc_version: Optional[str] = None
    ci: Optional[bool] = None


class File(msgspec.Struct, omit_defaults=True):
    filename: Optional[str] = None
    project: Optional[str] = None
    version: Optional[str] = None
    type: Optional[str] = None


Timestamp = Union[str, int, float, None]


class Download(msgspec.Struct):
    """One row of `file_downloads`. Nulls stay nulls, as BigQuery exports them."""

    timestamp: Timestamp = None
    country_code: Optional[str] = None
    url: Optional[str] = None
    project: Optional[str] = None
    file: Optional[File] = None
    details: Optional[Details] = None
    tls_protocol: Optional[str] = None
    tls_cipher: Optional[str] = None


DECODER = msgspec.json.Decoder(Download)

# A Kafka message may carry several events, one JSON object per line, marked by this header. Kafka's cost is per
# message (the client's produce call and delivery report, the broker's record handling), not per byte: a replay at
# full speed spent most of its time there. Unmarked messages hold exactly one event, as other consumers of a
# shared topic expect, so pypi-pulse packs only where it says so (`pack_events`).
PACK_HEADER = ("content-type", b"application/x-ndjson")
PACK_MAX_BYTES = 512 * 1024  # well under Kafka's default message.max.bytes (1 MB) on both client and broker


def unpack(value: bytes) -> list[bytes]:
    """The events of a packed message: every line is one (a blank line is an invalid event, dead-lettered)."""
    return value.split(b"\n")


class BadTimestamp(ValueError):
    pass


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# Endings that mark a timestamp as UTC (BigQuery's export writes ` UTC`); with none, a timestamp is taken as UTC.
UTC_SUFFIXES = (" UTC", "Z", "+00:00", "+0000", " +0000")
# What may follow a UTC timestamp's first 19 characters for them alone to decide its second: a fraction, then a UTC
# ending or nothing. The same text `_parse_str` accepts, so the cached reading and the full one agree.
_SECOND_TAIL = re.compile(r"(?:\.[0-9]*)?(?:" + "|".join(map(re.escape, UTC_SUFFIXES)) + r")?\Z")
_second_cache: dict[str, int] = {}


def _shown(ts: object) -> str:
    """A timestamp as a dead-letter reason quotes it: bounded, since the reason travels in a Kafka header."""
    text = repr(ts)
    return text if len(text) <= 80 else f"{text[:60]}... ({len(text)} characters)"


def _parse_str(ts: str) -> float:
    s = ts.strip()
    if s.endswith(" UTC"):
        s = s[:-4] + "+00:00"
    elif s.endswith("Z"):
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadTimestamp(f"unparseable timestamp {_shown(ts)}") from None
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH).total_seconds()


def epoch_seconds(ts: Timestamp) -> float:
    """Epoch seconds (float) of any timestamp form real exports contain.

    Accepts `2026-11-20 23:59:50.123456 UTC`, ISO-8601 with `Z`/`+00:00`/any offset or none (taken as UTC),
    and epoch seconds, milliseconds or microseconds (told apart by magnitude).
    """
    if ts is None:
        raise BadTimestamp("missing timestamp")
    if isinstance(ts, bool):
        raise BadTimestamp(f"timestamp must be a string or number, got {ts!r}")
    if isinstance(ts, (int, float)):
        try:
            v = float(ts)
        except OverflowError:  # an integer beyond any float
            raise BadTimestamp(f"epoch timestamp {_shown(ts)} out of range") from None
        if not math.isfinite(v):
            raise BadTimestamp(f"epoch timestamp {ts!r} is not a finite number")
        if v > 1e14:
            return v / 1e6
        if v > 1e11:
            return v / 1e3
        if v < 0:
            raise BadTimestamp(f"negative epoch timestamp {ts!r}")
        return v
    return _parse_str(ts)


def epoch_second(ts: Timestamp) -> int:
    """The whole UTC second an event falls in: the hot path of the dataflow.

    Events of one second share their first 19 characters, so for UTC strings the parse is cached on that
    prefix and costs one dict lookup per event.
    """
    if type(ts) is str and len(ts) >= 19:
        if len(ts) == 19 or _SECOND_TAIL.match(ts, 19):
            key = ts[:19]
            sec = _second_cache.get(key)
            if sec is None:
                sec = int(_parse_str(key) // 1)
                if len(_second_cache) > 200_000:
                    _second_cache.clear()
                _second_cache[key] = sec
            return sec
    return int(epoch_seconds(ts) // 1)


def format_bigquery_ts(epoch: float) -> str:
    """The timestamp text BigQuery writes in NDJSON exports."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    return dt.strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def iso_second(sec: int) -> str:
    return datetime.fromtimestamp(sec, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_iso(value: str) -> float:
    """User-given ISO bounds (CLI, API): same tolerance as event timestamps."""
    return epoch_seconds(value)
