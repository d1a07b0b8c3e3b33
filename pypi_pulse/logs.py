"""Structured logs, quiet by default (warnings and errors only); `--log-level info` or `json` for operators."""

from __future__ import annotations

import logging
import sys

import structlog


def setup(level: str = "warning", fmt: str = "console") -> None:
    lvl = getattr(logging, level.upper(), logging.WARNING)
    logging.basicConfig(level=lvl, stream=sys.stderr, format="%(message)s")
    renderer = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(lvl),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=False,
    )
