"""Helpers of the fault tests that replay an export in a batch run: the download events written into it, and the
`pypi-pulse run --source file:...` that replays it to the end, as the CLI runs it."""

from __future__ import annotations

import json
import random
import subprocess
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Optional

from pypi_pulse import command_lines

COUNTRIES = ("US", "DE", "XK", None)  # XK is a code the ISO table lacks; None a download of unknown origin


def spread_events(
    start: float,
    n: int,
    span_s: float,
    projects: Sequence[str],
    rng: Optional[random.Random] = None,
    countries: Sequence[Optional[str]] = COUNTRIES,
) -> list[dict]:
    """n downloads spread evenly over [start, start + span_s), in BigQuery's export shape: each country and project
    in turn, or drawn by `rng`."""
    events = []
    for i in range(n):
        country = rng.choice(countries) if rng else countries[i % len(countries)]
        project = rng.choice(projects) if rng else projects[i % len(projects)]
        events.append(
            {
                "timestamp": datetime.fromtimestamp(start + span_s * i / n, UTC).strftime("%Y-%m-%d %H:%M:%S.%f UTC"),
                "country_code": country,
                "project": project,
                "details": {"installer": {"name": "pip"}, "python": "3.12.1"},
            }
        )
    return events


def batch_run(export: Path, sink: str, data_dir: Path, expect_rc: int = 0) -> tuple[dict, str]:
    """Replay `export` into `sink` as fast as it goes until everything is stored: the run's JSON summary and its
    stderr, once it exited with `expect_rc`."""
    proc = subprocess.run(
        command_lines.replay(export, sink, data_dir, "--json"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == expect_rc, proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1]), proc.stderr
