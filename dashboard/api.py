"""The JSON API: pypistats.org-compatible history endpoints, live windows and per-country figures, under /api.

Existing pypistats clients work unchanged when pointed at this server: the paths, field names, `type` values,
categories (`with_mirrors`/`without_mirrors`, NULL categories as the string "null") and the `period`, `mirrors`,
`version` and `os` parameters are those of pypistats.org. As there, only days with downloads are listed and
`start_date`/`end_date` default to the last 180 days; unlike it, the day in progress is included (this is live).

There is no authentication here: the dashboard server wraps every route in its sign-in / API-token check (and
honours `--public-api`). Each request opens a sink with `open_sink_fn()` and closes it when done.
"""

from __future__ import annotations

import datetime as dt
import functools
import time
from collections.abc import Callable
from typing import Optional

from flask import Blueprint, current_app, jsonify, request

from pypi_pulse.countries import ALPHA2, EXTRA
from pypi_pulse.dashboard import live_api
from pypi_pulse.dashboard.freshness import SummaryHealth
from pypi_pulse.dashboard.inputs import project_name_problem
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.events import BadTimestamp, parse_iso
from pypi_pulse.names import normalize
from pypi_pulse.rules import NAMED_SYSTEMS, OTHER_SYSTEM
from pypi_pulse.sink import queries
from pypi_pulse.sink.base import Sink

DEFAULT_DAYS = 180
MAX_LAST_WINDOWS = 48 * 3600
MAX_RANGE_SECONDS = 48 * 3600
MAX_LIMIT = 1000
PERIODS = {"day": "last_day", "week": "last_week", "month": "last_month"}
SYSTEM_CATEGORIES = (*NAMED_SYSTEMS, OTHER_SYSTEM, "null")  # the system rule's categories (pypi_pulse.rules)


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status
        self.message = message


def _bad(message: str) -> ApiError:
    return ApiError(400, message)


def _day_param(name: str) -> Optional[str]:
    v = request.args.get(name)
    if v is None or v == "":
        return None
    try:
        return queries.iso_day(v)
    except ValueError:
        raise _bad(f"{name} must be a date YYYY-MM-DD, got {v!r}") from None


def _date_range(sink: Sink) -> tuple[str, str]:
    end = _day_param("end_date") or queries.current_day(sink)
    start = _day_param("start_date") or _days_before(end, DEFAULT_DAYS)
    if start > end:
        raise _bad(f"start_date {start} is after end_date {end}")
    return start, end


def _days_before(day: str, n: int) -> str:
    """`n` days before `day`, or the first day of the calendar when that is earlier (end_date=0001-01-05)."""
    try:
        return (dt.date.fromisoformat(day) - dt.timedelta(days=n)).isoformat()
    except OverflowError:
        return dt.date.min.isoformat()


def _int_param(name: str, default: int, lo: int, hi: int) -> int:
    v = request.args.get(name)
    if v is None or v == "":
        return default
    try:
        n = int(v)
    except ValueError:
        raise _bad(f"{name} must be an integer between {lo} and {hi}, got {v!r}") from None
    if not lo <= n <= hi:
        raise _bad(f"{name} must be between {lo} and {hi}, got {n}")
    return n


def _package(sink: Sink, package: str) -> str:
    limits = current_app.config.get("PYPI_PULSE_LIMITS") or WebLimits.defaults()
    problem = project_name_problem(package, limits.max_name_chars)
    if problem:
        raise _bad(problem)
    project = queries.known_package(sink, package)
    if project is None:
        raise ApiError(404, f"package {package!r} not found (no downloads recorded for {normalize(package)!r})")
    return project


def _category(c: Optional[str]) -> str:
    return "null" if c is None else c


def _series(package: str, kind: str, rows: list[tuple[str, str, int]]) -> dict:
    return {
        "data": [{"category": c, "date": d, "downloads": n} for d, c, n in sorted(rows, key=lambda r: (r[0], r[1]))],
        "package": package,
        "type": f"{kind}_downloads",
    }


def _filter_category(rows, wanted: Optional[str], *, casefold: bool = False):
    """Keep rows of one category ('null' selects the NULL category), as pypistats' `version`/`os` filters do."""
    out = [(d, _category(c), n) for d, c, n in rows]
    if wanted is None or wanted == "":
        return out
    if casefold:
        w = wanted.casefold()
        return [r for r in out if r[1].casefold() == w]
    return [r for r in out if r[1] == wanted]


def _bool_param(name: str) -> Optional[bool]:
    v = request.args.get(name)
    if v is None or v == "":
        return None
    s = v.strip().lower()
    if s in ("true", "1", "yes"):
        return True
    if s in ("false", "0", "no"):
        return False
    raise _bad(f"{name} must be true or false, got {v!r}")


def create_api_blueprint(open_sink_fn: Callable[[], Sink]) -> Blueprint:
    """The /api blueprint; `open_sink_fn()` returns a sink the blueprint owns for one request (it closes it)."""
    bp = Blueprint("api", __name__, url_prefix="/api")

    def with_sink(fn):
        @functools.wraps(fn)
        def run(*args, **kwargs):
            sink = open_sink_fn()
            try:
                return fn(sink, *args, **kwargs)
            finally:
                sink.close()

        return run

    @bp.errorhandler(ApiError)
    def _api_error(exc: ApiError):
        return jsonify({"error": exc.message, "status": exc.status}), exc.status

    @bp.get("/openapi.json")
    def openapi():
        from pypi_pulse.dashboard.openapi import openapi_document  # the description imports this module's limits

        return jsonify(openapi_document())

    # ---- pypistats.org-compatible ---------------------------------------------------------------------
    @bp.get("/packages/<package>/recent")
    @with_sink
    def recent(sink: Sink, package: str):
        period = request.args.get("period")
        if period not in (None, "") and period not in PERIODS:
            raise _bad(f"period must be day, week or month, got {period!r}")
        project = _package(sink, package)
        data = queries.recent(sink, project)
        if period:
            data = {PERIODS[period]: data[PERIODS[period]]}
        return jsonify({"data": data, "package": project, "type": "recent_downloads"})

    @bp.get("/packages/<package>/overall")
    @with_sink
    def overall(sink: Sink, package: str):
        mirrors = _bool_param("mirrors")
        project = _package(sink, package)
        start, end = _date_range(sink)
        rows = []
        if mirrors in (None, True):
            rows += [
                (d, "with_mirrors", n)
                for d, _c, n in queries.daily_by_category(sink, project, "with_mirrors", start, end)
            ]
        if mirrors in (None, False):
            rows += [
                (d, "without_mirrors", n)
                for d, _c, n in queries.daily_by_category(sink, project, "overall", start, end)
            ]
        rows.sort(key=lambda r: (r[0], r[1]))
        return jsonify(_series(project, "overall", rows))

    def _dimension_route(kind: str, param: str, casefold: bool = False):
        @with_sink
        def view(sink: Sink, package: str):
            wanted = request.args.get(param)
            project = _package(sink, package)
            start, end = _date_range(sink)
            rows = _filter_category(
                queries.daily_by_category(sink, project, kind, start, end), wanted, casefold=casefold
            )
            return jsonify(_series(project, kind, rows))

        view.__name__ = kind
        bp.add_url_rule(f"/packages/<package>/{kind}", view_func=view, methods=["GET"])

    _dimension_route("python_major", "version")
    _dimension_route("python_minor", "version")
    _dimension_route("system", "os", casefold=True)

    # ---- countries ------------------------------------------------------------------------------------
    @bp.get("/countries")
    @with_sink
    def countries(sink: Sink):
        start, end = _date_range(sink)
        package = request.args.get("package")
        project = _package(sink, package) if package else None
        rows = queries.countries(sink, start, end, project)
        return jsonify(
            {
                "data": [{"country": c, "downloads": n} for c, n in rows],
                "package": project,
                "start_date": start,
                "end_date": end,
                "type": "country_downloads",
            }
        )

    @bp.get("/countries/<cc>/top")
    @with_sink
    def country_top(sink: Sink, cc: str):
        code = cc.upper()
        if code not in ALPHA2 and code not in EXTRA:
            raise _bad(f"unknown country code {cc!r}: use an ISO 3166-1 alpha-2 code such as US or DE (ZZ: unknown)")
        start, end = _date_range(sink)
        limit = _int_param("limit", 10, 1, MAX_LIMIT)
        rows = queries.country_top(sink, code, start, end, limit)
        return jsonify(
            {
                "data": [{"project": p, "downloads": n} for p, n in rows],
                "country": code,
                "start_date": start,
                "end_date": end,
                "type": "country_top_packages",
            }
        )

    # ---- live -----------------------------------------------------------------------------------------
    @bp.get("/live/windows")
    @with_sink
    def live_windows(sink: Sink):
        a = request.args
        if "last" in a:
            if "start" in a or "end" in a:
                raise _bad("give either last=N or start and end, not both")
            n = _int_param("last", 60, 1, MAX_LAST_WINDOWS)
            rows = queries.live_latest(sink, n)
        elif "start" in a and "end" in a:
            try:
                start, end = parse_iso(a["start"]), parse_iso(a["end"])
            except BadTimestamp as exc:
                raise _bad(f"start and end must be ISO-8601 times such as 2026-11-20T12:00:00Z ({exc})") from None
            if end <= start:
                raise _bad("end must be after start")
            if end - start > MAX_RANGE_SECONDS:
                raise _bad(f"at most {MAX_RANGE_SECONDS} seconds per request: narrow start..end")
            rows = queries.live_windows(sink, int(start // 1), int(-(-end // 1)))
        else:
            raise _bad("give start=ISO&end=ISO, or last=N (the newest N windows)")
        return jsonify([w.to_json() for w in rows])

    summaries = SummaryHealth()

    live_api.register(bp, open_sink_fn, _bad)

    @bp.get("/live/summary")
    def live_summary():
        out = summaries.summary(open_sink_fn)  # answers while the sink cannot be read: marked delayed
        out["generated_at"] = time.time()
        return jsonify(out)

    return bp
