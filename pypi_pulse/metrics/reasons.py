"""Dead-letter reasons as a bounded label: the reason text itself carries offsets and parser messages."""

from __future__ import annotations

from pypi_pulse.bounds import EVENT_TOO_LARGE, PROJECT_NAME_TOO_LONG, TIMESTAMP_BEFORE_2016, TIMESTAMP_IN_FUTURE

# An event outside the bounds of pypi_pulse/bounds.py: its reason text starts with the label itself.
BOUND_REASONS = (TIMESTAMP_IN_FUTURE, TIMESTAMP_BEFORE_2016, PROJECT_NAME_TOO_LONG, EVENT_TOO_LARGE)
REASONS = (
    "invalid_event",
    "bad_timestamp",
    "missing_project",
    "unreadable_row",
    "bad_csv_row",
    *BOUND_REASONS,
    "other",
)


def reason_label(reason: str) -> str:
    r = reason.lower()
    for label in BOUND_REASONS:
        if r.startswith(label):
            return label
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
