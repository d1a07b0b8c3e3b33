"""`pypi-pulse backfill`: fill the daily rollups of past days (registered by pypi_pulse.cli)."""

import datetime as dt
from pathlib import Path
from typing import Annotated, Optional

import typer

from pypi_pulse.errors import UserError


def _date(name: str, value: str) -> dt.date:
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise UserError(f"{name} {value!r} is not a date: use YYYY-MM-DD, e.g. 2026-05-01") from None


def register(app: typer.Typer) -> None:
    from pypi_pulse.cli_support import (
        ConfigOpt,
        DataDirOpt,
        HistoryOpt,
        LogOpt,
        SinkOpt,
        err,
        print_summary,
        settings,
    )

    @app.command()
    def backfill(
        start: Annotated[str, typer.Option("--start", help="First UTC day to fill (YYYY-MM-DD).")],
        end: Annotated[str, typer.Option("--end", help="Last UTC day to fill (YYYY-MM-DD); yesterday at the latest.")],
        source: Annotated[str, typer.Option("--source", help="synthetic | file:PATH | bigquery")] = "synthetic",
        force: Annotated[bool, typer.Option("--force", help="Redo days that were already backfilled.")] = False,
        seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic history.")] = 0,
        projects: Annotated[
            int, typer.Option("--projects", help="Synthetic: how many of the most popular projects get a history.")
        ] = 300,
        daily_downloads: Annotated[
            Optional[float],
            typer.Option(
                "--daily-downloads",
                help="Synthetic: downloads of all PyPI on an average day (default: --rate x 86400).",
            ),
        ] = None,
        rate: Annotated[
            Optional[float], typer.Option("--rate", help="Synthetic: the live rate (events/s) to match.")
        ] = None,
        progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar.")] = True,
        billing_project: Annotated[
            Optional[str], typer.Option("--billing-project", help="BigQuery: Google Cloud project billed for queries.")
        ] = None,
        credentials: Annotated[
            Optional[Path], typer.Option("--credentials", help="BigQuery: service-account key file (default: ADC).")
        ] = None,
        sink: SinkOpt = None,
        history: HistoryOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
        log_level: LogOpt = None,
    ) -> None:
        """Fill the daily rollups of past days from BigQuery (one aggregate query a day), an export file, or a
        synthetic history. Resumable: completed days are skipped unless --force. Never double counts with the stream."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        from pypi_pulse.producer.backfill import backfill as run
        from pypi_pulse.producer.backfill import check_range, days_between
        from pypi_pulse.sink.base import open_sink

        s = settings(
            config,
            sink=sink,
            history=history,
            data_dir=data_dir,
            log_level=log_level,
            rate=rate,
            source=source,
            billing_project=billing_project,
            credentials=credentials,
        )
        if projects < 1:
            raise UserError("--projects must be at least 1")
        d0, d1 = _date("--start", start), _date("--end", end)
        check_range(d0, d1)
        total = len(days_between(d0, d1))
        with (
            open_sink(s.sink_url, history=s.history_path) as db,
            Progress(
                TextColumn("backfill {task.fields[day]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=err,
                disable=not progress,
                transient=False,
            ) as bar,
        ):
            task = bar.add_task("days", total=total, day="")

            def on_day(day: str, _rows: int) -> None:
                bar.update(task, advance=1, day=day)

            summary = run(
                db,
                source,
                d0,
                d1,
                settings=s,
                force=force,
                seed=seed,
                projects=projects,
                daily_downloads=daily_downloads or s.rate * 86400,
                on_day=on_day,
            )
            bar.update(task, completed=total)
        print_summary("backfill", summary.as_dict())
