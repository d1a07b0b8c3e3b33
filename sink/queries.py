"""The read side of history and live data, written once for every consumer (JSON API, dashboard, CLI).

Every function takes an open `Sink`. The daily rollups are read from the history's Parquet files through
`Sink.history_query` (DuckDB: sink/history_reader.py), live data from the database through `Sink.query`; both take
`?` placeholders and the same portable SQL, so the SQLite and PostgreSQL backends answer identically. Days are ISO strings 'YYYY-MM-DD' (a `datetime.date` is
accepted too) and ranges are inclusive at both ends, as in pypistats.org. A NULL category comes back as None;
the API layer renders it as "null", the way pypistats.org does.

Project names are matched by their PEP 503 normalised form: that is how the dataflow and backfill store them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Optional, Union

from pypi_pulse.names import normalize
from pypi_pulse.rules import DERIVED
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.model import DIMENSIONS, WindowRow
from pypi_pulse.sink.schema import from_db_category, to_db_category

Day = Union[str, dt.date]

#: every dimension the history's `daily` / `daily_totals` hold
ALL_DIMENSIONS: tuple[str, ...] = DERIVED + DIMENSIONS
#: the dimensions a history reader holds in memory per project and day (sink/history_series.py, which loads numpy
#: and pyarrow: imported only once a question reads the history)
SERIES_DIMENSIONS: tuple[str, ...] = ("overall", "with_mirrors")


def iso_day(d: Day) -> str:
    """Accept a date or 'YYYY-MM-DD'; raise ValueError for anything else (the API turns it into a 400)."""
    if isinstance(d, dt.datetime):
        return d.date().isoformat()
    if isinstance(d, dt.date):
        return d.isoformat()
    return dt.date.fromisoformat(str(d)).isoformat()


def days_between(first: str, last: str) -> list[str]:
    """Every calendar day from `first` to `last` ('YYYY-MM-DD'), both included."""
    d0, d1 = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(d0 + dt.timedelta(days=i)).isoformat() for i in range((d1 - d0).days + 1)]


def _dimension(dimension: str) -> str:
    if dimension not in ALL_DIMENSIONS:
        raise ValueError(f"unknown dimension {dimension!r}: use one of {', '.join(ALL_DIMENSIONS)}")
    return dimension


def _day_plus(day: str, days: int) -> str:
    return (dt.date.fromisoformat(day) + dt.timedelta(days=days)).isoformat()


# ---- time reference ---------------------------------------------------------------------------------------
def day_range(sink: Sink) -> Optional[tuple[str, str]]:
    """(oldest, newest) day holding rollups, None when there are none yet."""
    r = sink.history_query("SELECT MIN(day), MAX(day) FROM daily_totals")
    if not r or r[0][0] is None:
        return None
    return r[0][0], r[0][1]


def has_history(sink: Sink) -> bool:
    """True once any daily rollup exists (the supervisor backfills a first history otherwise)."""
    return bool(sink.history_query("SELECT 1 FROM daily_totals LIMIT 1"))


def current_day(sink: Sink, today: Optional[Day] = None) -> str:
    """The UTC day still in progress, i.e. the day after the last complete one.

    It is the day of the pipeline's event-time watermark when the stream has run (a replay of old files has its
    own 'today'), otherwise the day after the newest rollup (a backfilled history ends with a complete day), and
    never later than the wall-clock UTC date.
    """
    if today is not None:
        return iso_day(today)
    now = dt.datetime.now(dt.UTC)
    wall = now.date().isoformat()
    stats = sink.stats()
    candidates = [wall]
    if stats is not None and stats.watermark is not None:
        # a watermark beyond the wall clock (stored by a version that accepted far-future events, up to year 9999
        # and past what datetime can hold) cannot make the day later than the wall clock's: it is not read
        if 0 <= stats.watermark <= now.timestamp():
            candidates.append(dt.datetime.fromtimestamp(stats.watermark, dt.UTC).date().isoformat())
    else:
        rng = day_range(sink)
        if rng is not None:
            candidates.append(_day_plus(rng[1], 1))
    return min(candidates)


# ---- one package ------------------------------------------------------------------------------------------
def known_package(sink: Sink, name: str) -> Optional[str]:
    """The stored (normalised) name if the project has any rollup, else None."""
    project = normalize(name)
    held = sink.history_series(None, None, lambda s, days: s.present(project, "with_mirrors", days))
    if held is not None:
        return project if held else None
    rows = sink.history_query(
        "SELECT project FROM daily WHERE project = ? AND dimension = 'with_mirrors' LIMIT 1", (project,)
    )
    return rows[0][0] if rows else None


def _sum(sink: Sink, project: Optional[str], dimension: str, start: str, end: str) -> int:
    if project is None:
        r = sink.history_query(
            "SELECT SUM(downloads) FROM daily_totals WHERE dimension = ? AND day >= ? AND day <= ?",
            (dimension, start, end),
        )
    else:
        series = _series_rows(sink, [project], dimension, start, end)
        if series is not None:
            return sum(n for _, n in series[project])
        r = sink.history_query(
            "SELECT SUM(downloads) FROM daily WHERE project = ? AND dimension = ? AND day >= ? AND day <= ?",
            (project, dimension, start, end),
        )
    return int(r[0][0] or 0) if r else 0


def _series_rows(
    sink: Sink, projects: list[str], dimension: str, start: str, end: str
) -> Optional[dict[str, list[tuple[str, int]]]]:
    """{project: [(day, downloads), ...]} of `overall` or `with_mirrors` from the history reader's in-memory series
    (the same rows as `daily`'s: sink/history_series.py); None for other dimensions, or when they cannot answer."""
    if dimension not in SERIES_DIMENSIONS:
        return None
    return sink.history_series(start, end, lambda s, days: s.rows(projects, dimension, days))


def recent(sink: Sink, project: Optional[str], today: Optional[Day] = None) -> dict[str, int]:
    """pypistats' recent downloads without mirrors: the last complete day, 7 and 30 complete days."""
    p = None if project is None else normalize(project)
    last = _day_plus(current_day(sink, today), -1)
    return {
        "last_day": _sum(sink, p, "overall", last, last),
        "last_week": _sum(sink, p, "overall", _day_plus(last, -6), last),
        "last_month": _sum(sink, p, "overall", _day_plus(last, -29), last),
    }


def daily_by_category(
    sink: Sink,
    project: Optional[str],
    dimension: str,
    start: Day,
    end: Day,
    category: Optional[str] = None,
    *,
    match_category: bool = False,
) -> list[tuple[str, Optional[str], int]]:
    """(day, category, downloads) for one project (None: all projects), oldest day first, categories sorted.

    With `match_category=True` only `category` is returned (None selects the NULL category).
    """
    dim = _dimension(dimension)
    s, e = iso_day(start), iso_day(end)
    of_category, category_params = (" AND category = ?", (to_db_category(category),)) if match_category else ("", ())
    if project is None:
        rows = sink.history_query(
            f"SELECT day, category, downloads FROM daily_totals WHERE dimension = ? AND day >= ? "
            f"AND day <= ?{of_category} ORDER BY day, category",
            (dim, s, e, *category_params),
        )
    else:
        p = normalize(project)
        series = _series_rows(sink, [p], dim, s, e)
        if series is not None:  # these dimensions have one category, NULL ('')
            if match_category and to_db_category(category) != "":
                return []
            return [(d, None, n) for d, n in series[p]]
        rows = sink.history_query(
            f"SELECT day, category, downloads FROM daily WHERE project = ? AND dimension = ? AND day >= ? "
            f"AND day <= ?{of_category} ORDER BY day, category",
            (p, dim, s, e, *category_params),
        )
    return [(d, from_db_category(c), int(n)) for d, c, n in rows]


def category_totals(
    sink: Sink, project: Optional[str], dimension: str, start: Day, end: Day, limit: Optional[int] = None
) -> list[tuple[Optional[str], int]]:
    """(category, downloads) summed over the period, largest first: one package's breakdown by a dimension."""
    dim = _dimension(dimension)
    s, e = iso_day(start), iso_day(end)
    lim = "" if limit is None else f" LIMIT {int(limit)}"
    if project is None:
        rows = sink.history_query(
            "SELECT category, SUM(downloads) AS n FROM daily_totals WHERE dimension = ? AND day >= ? AND day <= ? "
            f"GROUP BY category ORDER BY n DESC, category{lim}",
            (dim, s, e),
        )
    else:
        rows = sink.history_query(
            "SELECT category, SUM(downloads) AS n FROM daily WHERE project = ? AND dimension = ? AND day >= ? "
            f"AND day <= ? GROUP BY category ORDER BY n DESC, category{lim}",
            (normalize(project), dim, s, e),
        )
    return [(from_db_category(c), int(n)) for c, n in rows]


def compare(
    sink: Sink, projects: Iterable[str], start: Day, end: Day, dimension: str = "overall"
) -> dict[str, list[tuple[str, int]]]:
    """{project: [(day, downloads), ...]} for several projects over the same days (one package against others)."""
    dim = _dimension(dimension)
    names = sorted({normalize(p) for p in projects})
    out: dict[str, list[tuple[str, int]]] = {p: [] for p in names}
    if not names:
        return out
    series = _series_rows(sink, names, dim, iso_day(start), iso_day(end))
    if series is not None:
        return series
    marks = ", ".join("?" for _ in names)
    rows = sink.history_query(
        f"SELECT project, day, SUM(downloads) FROM daily WHERE project IN ({marks}) AND dimension = ? AND day >= ? "
        "AND day <= ? GROUP BY project, day ORDER BY project, day",
        (*names, dim, iso_day(start), iso_day(end)),
    )
    for p, d, n in rows:
        out[p].append((d, int(n)))
    return out


# ---- across packages and countries ------------------------------------------------------------------------
def top_packages(
    sink: Sink, start: Day, end: Day, country: Optional[str] = None, limit: int = 10
) -> list[tuple[str, int]]:
    """The most downloaded projects of a period (without mirrors), optionally in one country (ISO alpha-2)."""
    if country is not None:
        return country_top(sink, country, start, end, limit)
    totals = sink.history_series(iso_day(start), iso_day(end), lambda s, days: s.totals("overall", days))
    if totals is not None:
        return sorted(totals.items(), key=lambda kv: (-kv[1], kv[0]))[: int(limit)]
    rows = sink.history_query(
        "SELECT project, SUM(downloads) AS n FROM daily WHERE dimension = 'overall' AND day >= ? AND day <= ? "
        "GROUP BY project ORDER BY n DESC, project LIMIT ?",
        (iso_day(start), iso_day(end), int(limit)),
    )
    return [(p, int(n)) for p, n in rows]


def country_top(sink: Sink, cc: str, start: Day, end: Day, limit: int = 10) -> list[tuple[str, int]]:
    """That country's top projects over the period, read from the summaries of complete days where they are
    current and exact (sink/summaries.py), from every row otherwise."""
    from pypi_pulse.sink import summaries

    return summaries.country_top(sink, cc.upper(), iso_day(start), iso_day(end), int(limit))


def downloads_by_category(sink: Sink, start: Day, end: Day) -> dict[str, dict[str, int]]:
    """{category: {day: downloads}} for the packages of the shipped category map (pypi_pulse/categories.py)."""
    from pypi_pulse.sink import summaries

    return summaries.downloads_by_category(sink, iso_day(start), iso_day(end))


def countries(sink: Sink, start: Day, end: Day, project: Optional[str] = None) -> list[tuple[str, int]]:
    """(alpha-2 country, downloads) over the period, largest first; 'ZZ' is unknown."""
    rows = category_totals(sink, project, "country", start, end)
    return [(c if c is not None else "ZZ", n) for c, n in rows]


def countries_of(sink: Sink, start: Day, end: Day, projects: Iterable[str]) -> dict[str, list[tuple[str, int]]]:
    """{project: `countries(sink, start, end, project)`} for several projects, in one pass over their rows."""
    names = sorted({normalize(p) for p in projects})
    out: dict[str, list[tuple[str, int]]] = {p: [] for p in names}
    if names:
        for p, c, n in sink.history_query(
            f"SELECT project, category, SUM(downloads) AS n FROM daily WHERE project IN ({', '.join('?' for _ in names)}) "
            "AND dimension = 'country' AND day >= ? AND day <= ? GROUP BY project, category ORDER BY project, n DESC, category",
            (*names, iso_day(start), iso_day(end)),
        ):
            cc = from_db_category(c)
            out[p].append((cc if cc is not None else "ZZ", int(n)))
    return out


# ---- backfill bookkeeping ---------------------------------------------------------------------------------
def backfilled_days(sink: Sink, start: Optional[Day] = None, end: Optional[Day] = None) -> dict[str, str]:
    """{day: source} of the days a backfill completed (the stream does not add to those days)."""
    bounds = [(">=", start), ("<=", end)]
    where = " AND ".join(f"day {op} ?" for op, d in bounds if d is not None) or "TRUE"
    params = tuple(iso_day(d) for _, d in bounds if d is not None)
    return {d: src for d, src in sink.history_query(f"SELECT day, source FROM backfilled_days WHERE {where}", params)}


# ---- live -------------------------------------------------------------------------------------------------
def live_windows(sink: Sink, start: int, end: int) -> list[WindowRow]:
    """Closed 1-second windows with start <= t < end (epoch seconds)."""
    return sink.windows(start, end)


def live_latest(sink: Sink, n: int) -> list[WindowRow]:
    return sink.latest_windows(n)


def downloads_today(sink: Sink):
    """The UTC day of the newest window so far, every download counted once (`sink.today.Today`, None before any
    window): the day's applied rollups plus the windows of the minutes they do not cover yet (sink/today.py)."""
    from pypi_pulse.sink import today

    return today.downloads_today(sink)


def partial_days(sink: Sink, days: list[str]) -> list[str]:
    """Which of `days` the daily rollups do not hold whole yet (the day in progress, and the day before it until its
    last minutes are applied): charts of daily totals mark them (sink/today.py)."""
    from pypi_pulse.sink import today

    return today.partial_days(sink, [iso_day(d) for d in days])


def week_top_packages(sink: Sink, n: int = 10) -> list[tuple[str, int]]:
    """The most downloaded projects (without mirrors) of the last 7 days the rollups hold whole: a stable choice
    of default packages, where the newest second's top changes on every visit."""
    rng = day_range(sink)
    if rng is None:
        return []
    last = rng[1]
    while last >= rng[0] and partial_days(sink, [last]):
        last = _day_plus(last, -1)
    if last < rng[0]:
        last = rng[1]  # only days in progress: their figures so far are the best there is
    return top_packages(sink, _day_plus(last, -6), last, None, n)


def live_top(sink: Sink, seconds: int, n: int = 10):
    """The top `n` projects of the newest `seconds` of windows, each with its proven range (sink/live_top.py)."""
    from pypi_pulse.sink import live_top as lt

    latest = sink.latest_windows(1)
    if not latest:
        return None
    end = latest[0].start + 1
    return lt.top_of(sink.windows(end - seconds, end), end - seconds, end, n)


def live_summary(sink: Sink) -> dict:
    """The newest window and what is stored: windows held, downloads in them, the pipeline counters, and the UTC
    day so far (`today`, `downloads_today`)."""
    latest = sink.latest_windows(1)
    r = sink.query("SELECT COUNT(*), SUM(downloads), MIN(start), MAX(start) FROM windows")
    n, total, first, last = r[0] if r else (0, 0, None, None)
    stats = sink.stats()
    today = downloads_today(sink)
    from pypi_pulse.events import iso_second

    return {
        "latest": latest[0].to_json() if latest else None,
        "windows": int(n or 0),
        "downloads": int(total or 0),
        "first": iso_second(int(first)) if first is not None else None,
        "last": iso_second(int(last)) if last is not None else None,
        "watermark": stats.watermark if stats else None,
        "counters": dict(stats.counters) if stats else {},
        "today": None if today is None else today.to_json(),
    }


# ---- dashboard (added by the dashboard engineer) ----------------------------------------------------------
def package_names(sink: Sink) -> list[str]:
    """Every project that has a rollup, sorted: the dashboard's package picker searches these in memory."""
    held = sink.history_series(None, None, lambda s, days: s.totals("with_mirrors", days))
    if held is not None:
        return sorted(held)
    return [
        r[0]
        for r in sink.history_query(
            "SELECT DISTINCT project FROM daily WHERE dimension = 'with_mirrors' ORDER BY project"
        )
    ]
