"""Synthetic download events with PyPI's shape: real package popularity and country shares, realistic Pythons,
installers, platforms and CI share, and the daily and weekly rhythm (fewer downloads at weekends).

Reproducible: the same `seed` gives the same sequence of events for the same time span.
"""

from __future__ import annotations

import math
import random
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Optional

import orjson

from pypi_pulse.events import format_bigquery_ts
from pypi_pulse.producer import popularity as pop

# The long tail beyond the 15,000 named projects: its share and shape are popularity's (PyPI's real ones).
TAIL_SHARE = pop.TAIL_SHARE


def rhythm(epoch: float) -> float:
    """Relative traffic at a moment: a daily wave peaking in the US working day, and a weekend dip."""
    dt = datetime.fromtimestamp(epoch, tz=UTC)
    hour = dt.hour + dt.minute / 60
    daily = 1.0 + 0.25 * math.cos((hour - 17) / 24 * 2 * math.pi)
    weekly = 0.72 if dt.weekday() >= 5 else 1.07
    return daily * weekly


def _version_of(project: str, rng: random.Random) -> str:
    h = zlib.crc32(project.encode())
    major, minor, patch = h % 5, (h >> 4) % 30, (h >> 9) % 12
    # most downloads are of the newest release, some of older ones
    r = rng.random()
    if r < 0.6:
        return f"{major}.{minor}.{patch}"
    if r < 0.85:
        return f"{major}.{minor}.{max(patch - 1, 0)}" if patch else f"{major}.{max(minor - 1, 0)}.0"
    return f"{major}.{max(minor - 2, 0)}.0"


class SyntheticSource:
    def __init__(self, seed: Optional[int] = None, tail_share: float = TAIL_SHARE):
        self.rng = random.Random(seed)
        self.tail_share = tail_share
        self.pkgs = pop.packages()
        self.countries = pop.countries()
        self._country_json = [orjson.dumps(c) for c in self.countries.values]
        self._details = self._details_pool()
        self._files: dict[tuple, bytes] = {}

    def events(self, timestamps: list[float]) -> list[dict]:
        """One event per timestamp (ascending), as dicts in the BigQuery row shape."""
        return [orjson.loads(v) for v, _ in self.encoded(timestamps)]

    def _details_pool(self) -> list[bytes]:
        """Pre-encoded `details` records drawn from the realistic mixes; events pick from the pool uniformly.

        Drawing each field per event would cost most of the generator's time for no visible difference.
        """
        rng = self.rng
        pool = []
        for _ in range(4096):
            inst = rng.choices(pop.INSTALLERS.values, cum_weights=pop.INSTALLERS.cum_weights)[0]
            if inst is None:
                pool.append(b"null")  # unknown user agent: BigQuery has details = null
                continue
            system = rng.choices(pop.SYSTEMS.values, cum_weights=pop.SYSTEMS.cum_weights)[0]
            distro = rng.choices(pop.DISTROS.values, cum_weights=pop.DISTROS.cum_weights)[0]
            py = rng.choices(pop.PYTHONS.values, cum_weights=pop.PYTHONS.cum_weights)[0]
            pool.append(
                orjson.dumps(
                    {
                        "installer": {"name": inst[0], "version": inst[1]},
                        "python": py,
                        "implementation": {"name": "CPython", "version": py},
                        "distro": None
                        if distro is None or system is None or system[0] != "Linux"
                        else {
                            "name": distro[0],
                            "version": distro[1],
                            "id": distro[2],
                            "libc": {"lib": "glibc", "version": "2.39"},
                        },
                        "system": None if system is None else {"name": system[0], "release": system[1]},
                        "cpu": rng.choices(pop.CPUS.values, cum_weights=pop.CPUS.cum_weights)[0],
                        "openssl_version": "OpenSSL 3.0.13 30 Jan 2024",
                        "setuptools_version": "80.9.0",
                        "rustc_version": None,
                        "ci": rng.choices(pop.CI.values, cum_weights=pop.CI.cum_weights)[0],
                    }
                )
            )
        return pool

    # The first files seen are the popular ones; caching the 800,000-project tail as well kept a live producer
    # growing for as long as new tail files turned up (benchmarks/memory.py: 136 -> 295 MiB in 10 minutes).
    FILE_PARTS_CACHED = 50_000

    def _file_part(self, project: str, version: str, ftype: str) -> bytes:
        key = (project, version, ftype)
        part = self._files.get(key)
        if part is None:
            base = project.replace("-", "_")
            filename = f"{base}-{version}.tar.gz" if ftype == "sdist" else f"{base}-{version}-py3-none-any.whl"
            url = f"/packages/{zlib.crc32(filename.encode()):08x}/{filename}"
            part = (
                orjson.dumps(url)[:-1]
                + b'","project":'
                + orjson.dumps(project)
                + b',"file":'
                + orjson.dumps({"filename": filename, "project": project, "version": version, "type": ftype})
            )
            if len(self._files) < self.FILE_PARTS_CACHED:
                self._files[key] = part
        return part

    def encoded(self, timestamps: list[float]) -> list[tuple[bytes, bytes]]:
        """(value, key) pairs ready for Kafka: the JSON row, keyed by project."""
        rng = self.rng
        n = len(timestamps)
        ch = rng.choices
        projects = ch(self.pkgs.values, cum_weights=self.pkgs.cum_weights, k=n)
        if self.tail_share:
            rand, tail_name, tail_index = rng.random, pop.tail_name, pop.tail_index
            for i in range(n):
                if rand() < self.tail_share:
                    projects[i] = tail_name(tail_index(rand()))
        countries = ch(self._country_json, cum_weights=self.countries.cum_weights, k=n)
        ftypes = ch(pop.FILE_TYPES.values, cum_weights=pop.FILE_TYPES.cum_weights, k=n)
        details = ch(self._details, k=n)
        out = []
        sec_prefix: dict[int, str] = {}
        for i in range(n):
            t = timestamps[i]
            sec = int(t)
            prefix = sec_prefix.get(sec)
            if prefix is None:
                prefix = sec_prefix[sec] = format_bigquery_ts(sec)[:19]
            project = projects[i]
            value = b"".join(
                (
                    b'{"timestamp":"',
                    f"{prefix}.{int((t - sec) * 1e6):06d} UTC".encode(),
                    b'","country_code":',
                    countries[i],
                    b',"url":',
                    self._file_part(project, _version_of(project, rng), ftypes[i]),
                    b',"details":',
                    details[i],
                    b',"tls_protocol":"TLSv1.3","tls_cipher":"TLS_AES_128_GCM_SHA256"}',
                )
            )
            out.append((value, project.encode()))
        return out

    def timestamps(self, start: float, end: float, mean_rate: float) -> list[float]:
        """Arrival times in [start, end) of a Poisson stream whose rate follows the daily and weekly rhythm."""
        rate = mean_rate * rhythm(start)
        expected = rate * (end - start)
        n = _poisson(self.rng, expected)
        return sorted(start + self.rng.random() * (end - start) for _ in range(n))


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 50:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def stream(
    source: SyntheticSource, rate: float, tick_s: float = 0.05, clock=None
) -> Iterator[list[tuple[bytes, bytes]]]:
    """Live batches: every tick, the events that happened during the previous tick, stamped with real time.

    A batch never spans more than a tick: a producer held up (its publisher waiting for a broker that acknowledges
    nothing, or starved of CPU) catches up a tick at a time, without sleeping, so what it holds stays within the
    publisher's bounds. One batch of the whole hold-up would be as large as the hold-up is long (some 50 MB of
    objects per second behind at 66,000 events/s), out of the publisher's sight and all at once."""
    import time

    clock = clock or time.time
    last = clock()
    while True:
        time.sleep(max(0.0, last + tick_s - clock()))
        end = min(clock(), last + tick_s)
        yield source.encoded(source.timestamps(last, end, rate))
        last = end
