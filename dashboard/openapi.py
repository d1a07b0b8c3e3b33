"""The OpenAPI 3.0 description of every /api route, served at /api/openapi.json: what the pypistats-compatible
routes, the live routes and trending take and answer, with the same limits the routes enforce."""

from __future__ import annotations

from flask import current_app, has_app_context

from pypi_pulse.dashboard import live_api, trending
from pypi_pulse.dashboard.api import MAX_LAST_WINDOWS, MAX_LIMIT, PERIODS, SYSTEM_CATEGORIES
from pypi_pulse.dashboard.freshness import SUMMARY_SCHEMA
from pypi_pulse.dashboard.limits import WebLimits
from pypi_pulse.dashboard.openapi_parts import (
    PACKAGE_ERRORS,
    array_of_objects,
    get,
    integer_param,
    json_response,
    param,
)

_PKG = param("package", "path", "Project name; matched by its PEP 503 normalised form.")
_DATES = [
    param(
        "start_date",
        desc="First day (YYYY-MM-DD); default 180 days before end_date.",
        schema={"type": "string", "format": "date"},
    ),
    param(
        "end_date",
        desc="Last day (YYYY-MM-DD); default the day in progress.",
        schema={"type": "string", "format": "date"},
    ),
]
_PROJECT_DOWNLOADS = {"project": {"type": "string"}, "downloads": {"type": "integer"}}


def openapi_document() -> dict:
    """OpenAPI 3.0 description of every /api route (served at /api/openapi.json)."""
    doc = _openapi_core()
    limits = (current_app.config.get("PYPI_PULSE_LIMITS") if has_app_context() else None) or WebLimits.defaults()
    from pypi_pulse.sink.trending import TrendingOptions

    doc["paths"].update(live_api.openapi_paths(limits.live_top_max_window_seconds))
    doc["paths"].update(trending.openapi_paths(TrendingOptions.current().max_window_hours))
    doc["components"]["schemas"].update({**live_api.OPENAPI_SCHEMAS, **trending.OPENAPI_SCHEMAS})
    return doc


def _openapi_core() -> dict:
    def series(kind: str, extra: list) -> dict:
        return get(f"Daily downloads of a package by {kind}", [_PKG, *extra, *_DATES], "Series")

    return {
        "openapi": "3.0.3",
        "info": {
            "title": "pypi-pulse API",
            "version": "1",
            "description": "pypistats.org-compatible download history plus live 1-second windows.",
        },
        "paths": {
            "/api/packages/{package}/recent": get(
                "Downloads without mirrors on the last complete day, 7 and 30 days",
                [_PKG, param("period", schema={"type": "string", "enum": list(PERIODS)})],
                "Recent",
            ),
            "/api/packages/{package}/overall": series(
                "with/without mirrors", [param("mirrors", schema={"type": "string", "enum": ["true", "false"]})]
            ),
            "/api/packages/{package}/python_major": series(
                "Python major version", [param("version", desc="e.g. 3, or null")]
            ),
            "/api/packages/{package}/python_minor": series(
                "Python minor version", [param("version", desc="e.g. 3.12, or null")]
            ),
            "/api/packages/{package}/system": series(
                "operating system", [param("os", schema={"type": "string", "enum": list(SYSTEM_CATEGORIES)})]
            ),
            "/api/countries": get("Downloads by country", [*_DATES, param("package")], "Countries"),
            "/api/countries/{cc}/top": get(
                "A country's top packages",
                [
                    param("cc", "path", "ISO 3166-1 alpha-2 code (ZZ: unknown)"),
                    *_DATES,
                    integer_param("limit", MAX_LIMIT, 10),
                ],
                "CountryTop",
            ),
            "/api/live/windows": {
                "get": {
                    "summary": "Closed 1-second windows in [start, end), or the newest `last`",
                    "parameters": [
                        param("start", schema={"type": "string", "format": "date-time"}),
                        param("end", schema={"type": "string", "format": "date-time"}),
                        integer_param("last", MAX_LAST_WINDOWS),
                    ],
                    "responses": {
                        "200": {
                            "description": "OK",
                            "content": {
                                "application/json": {
                                    "schema": {"type": "array", "items": {"$ref": "#/components/schemas/Window"}}
                                }
                            },
                        },
                        "400": PACKAGE_ERRORS["400"],
                    },
                }
            },
            "/api/live/summary": {
                "get": {
                    "summary": "The newest window, stored totals and the UTC day so far (`today`)",
                    "responses": {"200": json_response("Summary")},
                }
            },
            "/api/openapi.json": {"get": {"summary": "This document", "responses": {"200": {"description": "OK"}}}},
        },
        "components": {
            "schemas": {
                "Error": {
                    "type": "object",
                    "required": ["error"],
                    "properties": {"error": {"type": "string"}, "status": {"type": "integer"}},
                },
                "Recent": {
                    "type": "object",
                    "properties": {
                        "data": {"type": "object", "properties": {k: {"type": "integer"} for k in PERIODS.values()}},
                        "package": {"type": "string"},
                        "type": {"type": "string", "enum": ["recent_downloads"]},
                    },
                },
                "Series": {
                    "type": "object",
                    "properties": {
                        "data": array_of_objects(
                            {
                                "category": {"type": "string"},
                                "date": {"type": "string", "format": "date"},
                                "downloads": {"type": "integer"},
                            }
                        ),
                        "package": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
                "Countries": {
                    "type": "object",
                    "properties": {
                        "data": array_of_objects({"country": {"type": "string"}, "downloads": {"type": "integer"}}),
                        "package": {"type": "string", "nullable": True},
                        "start_date": {"type": "string"},
                        "end_date": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
                "CountryTop": {
                    "type": "object",
                    "properties": {
                        "data": array_of_objects(_PROJECT_DOWNLOADS),
                        "country": {"type": "string"},
                        "start_date": {"type": "string"},
                        "end_date": {"type": "string"},
                        "type": {"type": "string"},
                    },
                },
                "Window": {
                    "type": "object",
                    "properties": {
                        "start": {"type": "string", "format": "date-time"},
                        "downloads": {"type": "integer"},
                        "unique_packages": {"type": "integer"},
                        "countries": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "top": array_of_objects(_PROJECT_DOWNLOADS),
                    },
                },
                "Summary": {
                    "type": "object",
                    "properties": {
                        "latest": {"$ref": "#/components/schemas/Window"},
                        "windows": {"type": "integer"},
                        "downloads": {"type": "integer"},
                        "first": {"type": "string", "nullable": True},
                        "last": {"type": "string", "nullable": True},
                        "watermark": {"type": "number", "nullable": True},
                        "counters": {"type": "object", "additionalProperties": {"type": "integer"}},
                        "today": {"$ref": "#/components/schemas/Today"},
                        **SUMMARY_SCHEMA,
                    },
                },
            }
        },
    }
