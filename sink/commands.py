"""`pypi-pulse windows`: the closed 1-second windows of a sink, as the JSON API gives them; `pypi-pulse history
import`: a sink's rollup tables from before the Parquet history, into it (sink/legacy_import.py). Registered by
pypi_pulse.cli. No postponed annotations here: typer reads the options' types, which are imported in `register`."""

import json
import sys
from typing import Annotated

import typer

from pypi_pulse.errors import UserError


def register(app: typer.Typer) -> None:
    from pypi_pulse.cli_support import ConfigOpt, DataDirOpt, HistoryOpt, LogOpt, SinkOpt, err, out, settings

    @app.command()
    def windows(
        start: Annotated[str, typer.Option("--start", help="ISO time, inclusive (e.g. 2026-11-20T23:59:00Z).")],
        end: Annotated[str, typer.Option("--end", help="ISO time, exclusive.")],
        sink: SinkOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Print the closed 1-second windows in [start, end), one JSON object a line."""
        from pypi_pulse.events import BadTimestamp, parse_iso
        from pypi_pulse.sink.base import open_sink

        s = settings(config, sink=sink, data_dir=data_dir)
        try:
            lo, hi = int(parse_iso(start) // 1), int(-(-parse_iso(end) // 1))
        except BadTimestamp as exc:
            raise UserError(f"{exc}: use ISO-8601 like 2026-11-20T23:59:50Z") from None
        if hi <= lo:
            raise UserError("--end must be after --start")
        with open_sink(s.sink_url, readonly=True) as db:
            for row in db.windows(lo, hi):
                sys.stdout.write(json.dumps(row.to_json()) + "\n")

    history_app = typer.Typer(help="The rollup history's Parquet files (docs/history.md).", no_args_is_help=True)
    app.add_typer(history_app, name="history")

    @history_app.command("import")
    def history_import(
        sink: SinkOpt = None,
        history: HistoryOpt = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
        log_level: LogOpt = None,
    ) -> None:
        """Convert the sink's rollup tables from before the Parquet history (legacy_daily and the rest) into day
        files, one per day. Safe to run again: it rewrites the same files."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from pypi_pulse.sink.base import open_sink
        from pypi_pulse.sink.legacy_import import import_legacy, legacy_days

        s = settings(config, sink=sink, history=history, data_dir=data_dir, log_level=log_level)
        with open_sink(s.sink_url, history=s.history_path) as db:
            days = legacy_days(db)
            if not days:
                out.print(
                    f"history import: nothing to import (no legacy rollups in {s.sink_url})",
                    highlight=False,
                    soft_wrap=True,
                )
                return
            with Progress(
                TextColumn("import {task.fields[day]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=not progress,
            ) as bar:
                task = bar.add_task("days", total=len(days), day="")
                summary = import_legacy(db, days, on_day=lambda day, _rows: bar.update(task, advance=1, day=day))
        out.print(
            f"history import: {summary.days:,} days, {summary.rows:,} rows into {s.history_path}",
            highlight=False,
            soft_wrap=True,
        )
