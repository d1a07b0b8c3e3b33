"""`pypi-pulse windows`: the closed 1-second windows of a sink, as the JSON API gives them (registered by
pypi_pulse.cli). No postponed annotations here: typer reads the options' types, which are imported in `register`."""

import json
import sys
from typing import Annotated

import typer

from pypi_pulse.errors import UserError


def register(app: typer.Typer) -> None:
    from pypi_pulse.cli_support import ConfigOpt, DataDirOpt, SinkOpt, settings

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
