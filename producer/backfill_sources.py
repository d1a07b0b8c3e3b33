"""Where a backfill's rows come from, one UTC day at a time (producer/backfill.py writes them): a synthetic past
generated at aggregate level, or an export file aggregated with the dataflow's own parser. Both give
(project, dimension, category, downloads) rows with the history's dimensions.
"""

from __future__ import annotations

import datetime as dt
import zlib
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pypi_pulse import rules
from pypi_pulse.errors import UserError
from pypi_pulse.names import normalize

if TYPE_CHECKING:
    import numpy as np

# (project, dimension, category, downloads); project None: all the projects without rows of their own (totals only)
Row = tuple[Optional[str], str, Optional[str], int]


# ---- synthetic -----------------------------------------------------------------------------------------------
def _mix(weighted, key=lambda v: v) -> tuple[list, np.ndarray]:
    """(categories, probabilities) of a popularity mix, merging values that map to the same category."""
    import numpy as np

    acc: dict = defaultdict(float)
    prev = 0.0
    for v, cw in zip(weighted.values, weighted.cum_weights):
        acc[key(v)] += cw - prev
        prev = cw
    cats = list(acc)
    p = np.array([acc[c] for c in cats], dtype=float)
    return cats, p / p.sum()


def _system_category(v) -> Optional[str]:
    """The category of a popularity mix's (name, release) system."""
    return rules.system_category(None if v is None else v[0])


class SyntheticHistory:
    """A realistic past at aggregate level: per project and day, counts drawn from the same real mixes as the
    live synthetic stream (popularity, countries, Pythons, installers, systems, CPUs, file types, CI share).

    Scale: `daily_downloads` is the volume of the whole of PyPI on an average day (the default of `up` matches
    the live stream's rate, so that today's live figures continue the history). Per-project rows go to the
    `projects` most popular projects and to those named in `include` (the category map), each with its share of
    that volume; everything else (the rest of the top 15,000 and the synthetic long tail beyond it) is drawn as
    one block that counts in the all-project totals (downloads a day, countries, Pythons...) but has no rows of
    its own: some 600,000 projects at 26 rows or more a day each would not be a demo any more.
    Projects under `detail_min_downloads` on a day keep one `other` row per fine dimension, by the sink's folding
    rule (sink/history.py `fold`), while the totals keep their full detail, as a folded streamed day does.
    Shape: the weekly dip of `rhythm` (weekends ~0.67 of weekdays), a per-project trend (from -0.1% to +0.3% a
    day, anchored so that today's level is the live one), releases every 10-60 days that spike a project for a
    few days (and its mirror downloads more), a new version taking over after each release, and Poisson noise.
    Deterministic: a day depends only on (seed, day), so resumed or partial runs agree.
    """

    # countries drawn each with its own probability: the measured ones, unknown, and this many of the largest
    # others; the remaining small countries are drawn as one block spread over `other_countries` of them
    EXPLICIT_OTHER_COUNTRIES = 10

    def __init__(
        self,
        daily_downloads: float,
        projects: int = 1000,
        seed: int = 0,
        anchor: Optional[dt.date] = None,
        other_countries: int = 20,
        include: Iterable[str] = (),
        detail_min_downloads: int = 0,
    ):
        import numpy as np

        from pypi_pulse.producer import popularity as pop
        from pypi_pulse.producer.synthetic import rhythm

        self.np = np
        self.seed = seed
        self.anchor = (anchor or dt.datetime.now(dt.UTC).date()).toordinal()
        self._rhythm = rhythm
        pk = pop.packages()
        total = pk.cum_weights[-1]
        weights = np.diff(np.array((0.0,) + pk.cum_weights))
        wanted = {normalize(p) for p in include}
        keep = [i for i, v in enumerate(pk.values) if i < projects or normalize(v) in wanted]
        self.names: list[Optional[str]] = [normalize(pk.values[i]) for i in keep]
        share = weights[keep] / total * (1 - pop.TAIL_SHARE)
        self.share = np.append(share, 1.0 - share.sum())  # the last entry: everyone else, totals only
        self.names.append(None)
        self.detail_min_downloads = detail_min_downloads
        self.daily_downloads = float(daily_downloads)
        h = np.array([zlib.crc32((p or "").encode()) for p in self.names], dtype=np.int64)
        self.trend = -0.001 + 0.004 * ((h % 1000) / 1000.0)  # per day
        self.release_every = 10 + (h >> 10) % 51
        self.release_phase = (h >> 16) % self.release_every
        self.spike = 0.3 + 1.2 * (((h >> 20) % 100) / 100.0)
        self.trend[-1], self.spike[-1] = 0.0, 0.0  # the long tail as a whole neither trends nor is released
        self.vmajor, self.vminor = (h >> 3) % 5, (h >> 7) % 30

        inst_cats, inst_p = _mix(pop.INSTALLERS, lambda v: None if v is None else v[0])
        is_mirror = np.array([rules.is_mirror(c) for c in inst_cats])
        self.mirror_share = float(inst_p[is_mirror].sum())
        not_mirror = ~is_mirror
        self.installers = (
            [c for c, k in zip(inst_cats, not_mirror) if k],
            inst_p[not_mirror] / inst_p[not_mirror].sum(),
        )
        none_i = self.installers[0].index(None)
        self.null_details = float(self.installers[1][none_i])  # no user agent: every details field is null
        self.known_installers = (
            [c for c in self.installers[0] if c is not None],
            np.delete(self.installers[1], none_i) / (1 - self.null_details),
        )
        self.pythons = _mix(pop.PYTHONS, rules.python_minor)
        self.systems = _mix(pop.SYSTEMS, _system_category)
        self.cpus = _mix(pop.CPUS)
        self.ci = _mix(pop.CI, rules.ci_category)
        self.file_types = _mix(pop.FILE_TYPES)
        cc_cats, cc_p = _mix(pop.countries(), lambda v: "ZZ" if v is None else v)
        measured = set(pop.measured_countries())
        others = sorted((i for i, c in enumerate(cc_cats) if c not in measured and c != "ZZ"), key=lambda i: -cc_p[i])
        top = [i for i, c in enumerate(cc_cats) if c in measured or c == "ZZ"] + others[: self.EXPLICIT_OTHER_COUNTRIES]
        rest = others[self.EXPLICIT_OTHER_COUNTRIES :]
        self.countries = ([cc_cats[i] for i in top] + [None], np.append(cc_p[top], cc_p[rest].sum()))
        self.rest_countries = [cc_cats[i] for i in rest]
        self.rest_p = cc_p[rest] / cc_p[rest].sum()
        self.other_countries = min(other_countries, len(rest))

    def block_totals(self, day: dt.date, downloads: int) -> list[tuple[int, int]]:
        """The day's downloads over its 10-minute blocks by the rhythm's hours, as (block end, downloads): the
        hour-of-day profile the live stream leaves in `block_totals` (sink/recent.py), which trending reads."""
        from pypi_pulse.dataflow.clock import BLOCK_S

        np = self.np
        midnight = int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp())
        starts = [midnight + i * BLOCK_S for i in range(86400 // BLOCK_S)]
        p = np.array([self._rhythm(t + BLOCK_S / 2) for t in starts])
        counts = np.random.default_rng([self.seed, day.toordinal(), 1]).multinomial(downloads, p / p.sum())
        return [(t + BLOCK_S, int(n)) for t, n in zip(starts, counts.tolist())]

    def _day_factor(self, day: dt.date) -> float:
        midnight = dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp()
        return sum(self._rhythm(midnight + h * 3600 + 1800) for h in range(24)) / 24

    def rows(self, day: dt.date) -> list[tuple]:
        """The day's rows: (project, dimension, category, downloads), and 5-tuples whose last field says whether
        the row counts in the all-project totals (see `sink.rollup.backfill_table`)."""
        np = self.np
        o = day.toordinal()
        rng = np.random.default_rng([self.seed, o])
        age = (o - self.release_phase) % self.release_every  # days since the last release
        releases = (o - self.release_phase) // self.release_every
        boost = 1 + self.spike * np.exp(-age / 2.0)
        expected = (
            self.daily_downloads
            * self.share
            * self._day_factor(day)
            * np.exp(self.trend * (o - self.anchor))
            * boost
            * rng.lognormal(0, 0.05, len(self.names))
        )
        overall = rng.poisson(expected)
        mirrors = rng.poisson(expected * self.mirror_share / (1 - self.mirror_share) * (1 + 3 * (age == 0)))
        out: list[Row] = []
        names = self.names

        def emit(dim: str, cats: list, counts) -> None:
            rows_i, cols_i = np.nonzero(counts)
            for i, j in zip(rows_i.tolist(), cols_i.tolist()):
                out.append((names[i], dim, cats[j], int(counts[i, j])))

        emit("overall", [None], overall[:, None])
        emit("with_mirrors", [None], (overall + mirrors)[:, None])
        nulls = rng.binomial(overall, self.null_details)
        known = overall - nulls
        # installer, python, system, cpu and ci come from `details`, which is null for unknown user agents
        for dim, (cats, p) in (
            ("installer", self.known_installers),
            ("python_minor", self.pythons),
            ("system", self.systems),
            ("cpu", self.cpus),
            ("ci", self.ci),
        ):
            counts = rng.multinomial(known, p)
            if None in cats:
                counts[:, cats.index(None)] += nulls
            else:
                cats = cats + [None]
                counts = np.concatenate([counts, nulls[:, None]], axis=1)
            emit(dim, cats, counts)
            if dim == "python_minor":
                major: dict = defaultdict(lambda: np.zeros(len(names), dtype=np.int64))
                for j, c in enumerate(cats):
                    major[None if c is None else rules.major_of_minor(c)] += counts[:, j]
                mcats = list(major)
                emit("python_major", mcats, np.stack([major[c] for c in mcats], axis=1))
        cc = rng.multinomial(overall, self.countries[1])
        emit("country", self.countries[0][:-1], cc[:, :-1])
        rest = self.rest_countries
        for i, n in enumerate(cc[:, -1].tolist()):
            if n:
                picks = rng.choice(len(rest), self.other_countries, replace=False, p=self.rest_p)
                p = self.rest_p[picks]
                for j, k in zip(picks.tolist(), rng.multinomial(n, p / p.sum()).tolist()):
                    if k:
                        out.append((names[i], "country", rest[j], k))
        emit("file_type", self.file_types[0], rng.multinomial(overall, self.file_types[1]))
        # versions: the newest release takes over within days; the previous one and an older one keep the rest
        new_share = 0.85 - 0.6 * np.exp(-age / 3.0)
        newest = rng.binomial(overall, new_share)
        previous = rng.binomial(overall - newest, 0.7)
        older = overall - newest - previous
        for i, name in enumerate(names):
            maj, mnr, k = int(self.vmajor[i]), int(self.vminor[i]), int(releases[i]) % 40
            for v, n in (
                (f"{maj}.{mnr}.{k}", newest[i]),
                (f"{maj}.{mnr}.{max(k - 1, 0)}", previous[i]),
                (f"{maj}.{max(mnr - 1, 0)}.0", older[i]),
            ):
                if n:
                    out.append((name, "version", v, int(n)))
        return self._folded(out, overall + mirrors)

    def _folded(self, rows: list[tuple], with_mirrors) -> list[tuple]:
        """The long tail's rows count in the totals only; a project under `detail_min_downloads` downloads a day
        with mirrors (the sink's measure) keeps one `other` row per fine dimension in its rows while its full detail
        still counts in the totals."""
        from pypi_pulse.sink.rollup import FOLDED_CATEGORY, FOLDED_DIMENSIONS

        small = {name for name, n in zip(self.names, with_mirrors.tolist()) if n < self.detail_min_downloads}
        out: list[tuple] = []
        folded: dict = defaultdict(int)
        for row in rows:
            project, dim = row[0], row[1]
            if project is None:
                out.append((None, dim, row[2], row[3], True))
            elif project in small and dim in FOLDED_DIMENSIONS:
                out.append((None, dim, row[2], row[3], True))
                folded[(project, dim)] += row[3]
            else:
                out.append(row)
        out += [(p, dim, FOLDED_CATEGORY, n, False) for (p, dim), n in folded.items()]
        return out


# ---- files --------------------------------------------------------------------------------------------------
def file_days(path: Path, batch: int = 20_000) -> tuple[dict[str, list[Row]], int, int]:
    """Every day of an export aggregated locally with the dataflow's own parser: {day: rows}, read, rejected."""
    from pypi_pulse.dataflow.parse import parse_batch
    from pypi_pulse.dataflow.partials import day_of
    from pypi_pulse.dataflow.rollups import MinuteRollup
    from pypi_pulse.dataflow.source import RawBatch
    from pypi_pulse.producer.files import read_records

    if not path.exists():
        raise UserError(f"no file at {path}: pass an existing export with --source file:PATH")
    per_day: dict[str, MinuteRollup] = {}  # a whole day in one rollup state: it is additive
    read = rejected = 0
    values: list[bytes] = []

    def flush() -> None:
        nonlocal rejected
        part = parse_batch(RawBatch(0, 1, values, 0, True))
        rejected += len(part.dead)
        for minute, cols in part.minutes.items():
            day = day_of(minute)
            r = per_day.get(day)
            if r is None:
                r = per_day[day] = MinuteRollup()
            r.add(cols)
        values.clear()

    for rec in read_records(path):
        read += 1
        if rec.error is not None:
            rejected += 1
            continue
        values.append(rec.value)
        if len(values) >= batch:
            flush()
    if values:
        flush()
    return (
        {day: [(p, d, c, n) for (_day, p, d, c), n in r.final(day).items()] for day, r in per_day.items()},
        read,
        rejected,
    )
