"""The pieces every /api route's OpenAPI description is built from: a parameter, a JSON answer, an error, a GET.

A module of its own because the routes that describe themselves (dashboard/live_api.py, dashboard/trending.py)
use them as well as dashboard/openapi.py, which imports those routes to gather the whole document.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Optional


def param(
    name: str, where: str = "query", desc: str = "", schema: Optional[dict] = None, required: bool = False
) -> dict:
    """A parameter; one in the path is always required, as OpenAPI demands."""
    return {
        "name": name,
        "in": where,
        "required": required or where == "path",
        "description": desc,
        "schema": schema or {"type": "string"},
    }


def integer_param(name: str, maximum: int, default: Optional[int] = None, desc: str = "") -> dict:
    """A whole-number query parameter from 1 to `maximum`, the bounds its route enforces."""
    schema: dict = {"type": "integer", "minimum": 1, "maximum": maximum}
    if default is not None:
        schema["default"] = default
    return param(name, desc=desc, schema=schema)


def array_of_objects(properties: dict) -> dict:
    """The schema of a list of rows, such as an answer's `data`."""
    return {"type": "array", "items": {"type": "object", "properties": properties}}


def json_response(ref: str) -> dict:
    """A 200 answering the schema `ref` of components/schemas."""
    return {"description": "OK", "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def error_response(description: str) -> dict:
    """An answer in the JSON error shape every /api route uses."""
    return {
        "description": description,
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
    }


_UNKNOWN = error_response("Bad parameter or unknown package")
PACKAGE_ERRORS = {"400": _UNKNOWN, "404": _UNKNOWN}  # routes that look a package or a country up
PARAMETER_ERRORS = {"400": error_response("Bad parameter")}  # routes that answer for any valid parameters


def get(
    summary: str,
    params: list,
    ok: str,
    errors: Mapping[str, dict] = PACKAGE_ERRORS,
    description: Optional[str] = None,
) -> dict:
    """A route answering GET with the schema `ok`, or one of `errors`."""
    operation: dict = {"summary": summary}
    if description is not None:
        operation["description"] = description
    operation["parameters"] = params
    operation["responses"] = {"200": json_response(ok), **errors}
    return {"get": operation}
