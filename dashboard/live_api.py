"""`GET /api/live/top?window=60`: the top packages of the newest `window` seconds of live windows, each figure with
what the stored windows prove about it (sink/live_top.py: `downloads` is proven, `downloads_max` the most it can
be, `exact` when they meet; the ranking's own `exact` says whether any project left out could have had more).

    {"window": 60, "start": "2026-12-06T14:31:06Z", "end": "2026-12-06T14:32:06Z", "seconds": 60, "windows": 60,
     "downloads": 61234, "exact": false, "others_max": 402,
     "data": [{"project": "boto3", "downloads": 1530, "downloads_max": 1530, "exact": true}, ...]}

Mounted on the /api blueprint (dashboard/api.py) behind the same sign-in / API-token check; bad parameters are 400
JSON errors as everywhere under /api.
"""

from __future__ import annotations

from collections.abc import Callable

from flask import Blueprint, current_app, jsonify, request

from pypi_pulse.dashboard.inputs import bounded_int
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.openapi_parts import PARAMETER_ERRORS, array_of_objects, get, integer_param
from pypi_pulse.sink import queries
from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.live_top import TOP_N

DEFAULT_WINDOW_S = 60


def _int(name: str, default: int, lo: int, hi: int, bad: Callable[[str], Exception]) -> int:
    v = request.args.get(name)
    if v is None or v == "":
        return default
    n = bounded_int(v, lo, hi)
    if n is None:
        raise bad(f"{name} must be an integer between {lo} and {hi}, got {v[:40]!r}")
    return n


def register(bp: Blueprint, open_sink_fn: Callable[[], Sink], bad: Callable[[str], Exception]) -> None:
    @bp.get("/live/top")
    def live_top():
        limits = current_app.config.get("PYPI_PULSE_LIMITS") or WebLimits.defaults()
        window = _int("window", DEFAULT_WINDOW_S, 1, limits.live_top_max_window_seconds, bad)
        limit = _int("limit", TOP_N, 1, TOP_N, bad)
        sink = open_sink_fn()
        try:
            t = queries.live_top(sink, window, limit)
        finally:
            sink.close()
        if t is None:
            return jsonify(
                {
                    "window": window,
                    "start": None,
                    "end": None,
                    "seconds": window,
                    "windows": 0,
                    "downloads": 0,
                    "exact": True,
                    "others_max": 0,
                    "data": [],
                }
            )
        return jsonify({"window": window, **t.to_json()})


def openapi_paths(max_window_s: int) -> dict:
    """This route's OpenAPI description (merged into /api/openapi.json by dashboard/openapi.py)."""
    return {
        "/api/live/top": get(
            "Top packages of the newest `window` seconds, each with the range the per-second top 10s prove",
            [
                integer_param("window", max_window_s, DEFAULT_WINDOW_S, "Seconds, ending with the newest window."),
                integer_param("limit", TOP_N, TOP_N, "Places in the ranking."),
            ],
            "LiveTop",
            PARAMETER_ERRORS,
            description="Each window stores its second's top 10, so a project's downloads over several seconds are "
            "proven only for the seconds it was listed: `downloads` is that proven figure (a lower "
            "bound), `downloads_max` the most it can be, `exact` whether they meet. The ranking is "
            "`exact` when every entry is and no project left out can have had more than the last "
            "(`others_max`).",
        )
    }


OPENAPI_SCHEMAS = {
    "LiveTop": {
        "type": "object",
        "properties": {
            "window": {"type": "integer"},
            "start": {"type": "string", "format": "date-time", "nullable": True},
            "end": {"type": "string", "format": "date-time", "nullable": True},
            "seconds": {"type": "integer"},
            "windows": {"type": "integer"},
            "downloads": {"type": "integer"},
            "exact": {"type": "boolean"},
            "others_max": {"type": "integer"},
            "data": array_of_objects(
                {
                    "project": {"type": "string"},
                    "downloads": {"type": "integer"},
                    "downloads_max": {"type": "integer"},
                    "exact": {"type": "boolean"},
                }
            ),
        },
    },
    "Today": {
        "type": "object",
        "nullable": True,
        "description": (
            "The UTC day of the newest window so far, mirrors included: the day's applied daily rollups plus the "
            "windows of the minutes they do not cover yet, each download counted once."
        ),
        "properties": {
            "day": {"type": "string", "format": "date"},
            "downloads": {"type": "integer"},
            "from_rollups": {"type": "integer"},
            "from_windows": {"type": "integer"},
            "rollups_through": {"type": "string", "format": "date-time", "nullable": True},
            "backfilled": {"type": "boolean"},
        },
    },
}
