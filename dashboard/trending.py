"""`GET /api/trending?window=1h`: the projects downloaded most above their usual level for the hours of the week
(sink/trending.py defines the window, the baseline and the ratio; docs/trending.md explains them).

    {"window": "1h", "start": "2026-12-06T14:00:00Z", "end": "2026-12-06T15:00:00Z",
     "data": [{"project": "requests", "downloads": 51234, "baseline": 8120.5, "ratio": 6.31}]}

`start` and `end` are the whole hours measured (null, with no data, before the first sealed block). A bad
`window` or `limit` is a 400 with a JSON error, as every /api route answers.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from typing import Optional

from flask import Blueprint, jsonify, request

from pypi_pulse.dashboard.inputs import bounded_int
from pypi_pulse.dashboard.openapi_parts import PARAMETER_ERRORS, array_of_objects, get, integer_param, param
from pypi_pulse.events import iso_second
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.trending import TrendingOptions

MAX_LIMIT = 100
DEFAULT_LIMIT = 20
_WINDOW = re.compile(r"^([0-9]{1,3})h$")


class _BadRequest(Exception):
    pass


def window_hours(value: Optional[str], max_hours: int) -> int:
    """Hours of a `window` parameter such as `1h` or `6h`; ValueError says what is accepted."""
    m = _WINDOW.match(value or "")
    hours = bounded_int(m.group(1), 1, max_hours) if m else None
    if hours is None:
        raise ValueError(f"window must be a whole number of hours from 1h to {max_hours}h, got {(value or '')[:40]!r}")
    return hours


def _limit() -> int:
    v = request.args.get("limit")
    if v in (None, ""):
        return DEFAULT_LIMIT
    n = bounded_int(v, 1, MAX_LIMIT)
    if n is None:
        raise _BadRequest(f"limit must be an integer between 1 and {MAX_LIMIT}, got {v[:40]!r}")
    return n


def trending_json(options: TrendingOptions, sink: Sink, hours: int, limit: int) -> dict:
    t = options.compute(sink, hours, limit)
    return {
        "window": f"{hours}h",
        "start": None if t.start is None else iso_second(t.start),
        "end": None if t.end is None else iso_second(t.end),
        "data": t.rows,
    }


def create_trending_blueprint(open_sink_fn: Callable[[], Sink], options: Optional[TrendingOptions] = None) -> Blueprint:
    """Mounted under /api beside the history API, behind the same sign-in / API-token check."""
    bp = Blueprint("trending", __name__)
    opts = functools.lru_cache(maxsize=1)(lambda: options or TrendingOptions.current())

    @bp.errorhandler(_BadRequest)
    def _bad(exc: _BadRequest):
        return jsonify({"error": str(exc), "status": 400}), 400

    @bp.get("/trending")
    def trending():
        o = opts()
        try:
            hours = window_hours(request.args.get("window", "1h"), o.max_window_hours)
        except ValueError as exc:
            raise _BadRequest(str(exc)) from None
        limit = _limit()
        sink = open_sink_fn()
        try:
            return jsonify(trending_json(o, sink, hours, limit))
        finally:
            sink.close()

    return bp


def openapi_paths(max_window_hours: int) -> dict:
    """This route's OpenAPI description (merged into /api/openapi.json by dashboard/openapi.py)."""
    window = param(
        "window", desc="Whole hours, e.g. 1h.", schema={"type": "string", "pattern": "^[0-9]{1,3}h$", "default": "1h"}
    )
    return {
        "/api/trending": get(
            "Projects downloaded most above their usual level for the same hours of the week",
            [
                {**window, "x-maximum-hours": max_window_hours},
                integer_param("limit", MAX_LIMIT, DEFAULT_LIMIT, "Projects listed."),
            ],
            "Trending",
            PARAMETER_ERRORS,
            description="Whole hours the sealed rollup blocks reach (docs/trending.md); `start`/`end` are null "
            "before the first sealed block.",
        )
    }


OPENAPI_SCHEMAS = {
    "Trending": {
        "type": "object",
        "properties": {
            "window": {"type": "string"},
            "start": {"type": "string", "format": "date-time", "nullable": True},
            "end": {"type": "string", "format": "date-time", "nullable": True},
            "data": array_of_objects(
                {
                    "project": {"type": "string"},
                    "downloads": {"type": "integer"},
                    "baseline": {"type": "number"},
                    "ratio": {"type": "number"},
                }
            ),
        },
    },
}
