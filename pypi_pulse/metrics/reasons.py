"""Dead-letter reasons as a bounded label: the reason text itself carries offsets and parser messages."""

from __future__ import annotations

REASONS = ("invalid_event", "bad_timestamp", "missing_project", "unreadable_row", "bad_csv_row", "other")


def reason_label(reason: str) -> str:
    r = reason.lower()
    if r.startswith("invalid event"):
        return "invalid_event"
    if "timestamp" in r:
        return "bad_timestamp"
    if r == "missing project":
        return "missing_project"
    if r.startswith("unreadable"):
        return "unreadable_row"
    if r.startswith("csv"):
        return "bad_csv_row"
    return "other"
