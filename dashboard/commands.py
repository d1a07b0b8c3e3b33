"""`pypi-pulse serve` and `pypi-pulse users ...`, plus the first-user hook of `pypi-pulse up`."""

from __future__ import annotations

import sys
from datetime import UTC
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.table import Table

from pypi_pulse.errors import UserError

err = Console(stderr=True)
FIRST_USER = "admin"


def before_up(settings) -> None:
    """On a first `pypi-pulse up` there is no account yet: create one and print its password, once."""
    from pypi_pulse.dashboard.users import UserStore, generate_password

    store = UserStore(settings.data_dir)
    if store.names():
        return
    password = generate_password()
    store.add(FIRST_USER, password)
    err.print(
        f"dashboard: created user [bold]{FIRST_USER}[/] with password [bold]{password}[/] "
        f"(shown only now; manage users with `pypi-pulse users`)",
        highlight=False,
        soft_wrap=True,
    )  # off a terminal rich would wrap at 80 columns, mid-sentence in a log file


ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML file of settings (also PYPI_PULSE_CONFIG).")]
SinkOpt = Annotated[
    Optional[str], typer.Option("--sink", help="sqlite:///PATH.db or postgresql://... (default under --data-dir).")
]
HistoryOpt = Annotated[
    Optional[str],
    typer.Option("--history", help="Directory (or s3://... URL) of the rollup history (default: DATA_DIR/history)."),
]
DataDirOpt = Annotated[
    Optional[Path], typer.Option("--data-dir", help="Directory of the users file and session secret.")
]
LogOpt = Annotated[Optional[str], typer.Option("--log-level", help="debug | info | warning | error.")]


def settings(config: Optional[Path] = None, **flags):
    from pypi_pulse import logs
    from pypi_pulse.config import load_settings

    s = load_settings(config, **flags)
    logs.setup(s.log_level, s.log_format)
    return s


def _check_port_free(host: str, port: int) -> None:
    """The servers exit with their own multi-line messages (gunicorn after retrying) on a busy port: one line."""
    import socket

    try:
        with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, port))
    except OSError as exc:
        raise UserError(
            f"cannot listen on {host}:{port} ({exc.strerror}): pick another --port or stop what uses it"
        ) from None


def register(app: typer.Typer) -> None:

    @app.command()
    def serve(
        host: Annotated[Optional[str], typer.Option("--host", help="Bind address (default 127.0.0.1).")] = None,
        port: Annotated[Optional[int], typer.Option("--port", help="Port (default 8050).")] = None,
        public_api: Annotated[
            bool, typer.Option("--public-api", help="Let anyone read GET /api/... without signing in.")
        ] = False,
        secure_cookies: Annotated[
            bool, typer.Option("--secure-cookies", help="Send the session cookie over HTTPS only (behind a TLS proxy).")
        ] = False,
        workers: Annotated[
            Optional[int], typer.Option("--workers", help="Server processes (gunicorn; default 2).")
        ] = None,
        threads: Annotated[
            Optional[int], typer.Option("--threads", help="Request threads per server process (default 4).")
        ] = None,
        sink: SinkOpt = None,
        history: HistoryOpt = None,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
        log_level: LogOpt = None,
    ) -> None:
        """Serve the dashboard and the JSON API (sign-in required) until Ctrl-C."""
        from pypi_pulse.dashboard import server
        from pypi_pulse.dashboard.users import UserStore

        s = settings(
            config,
            host=host,
            port=port,
            sink=sink,
            history=history,
            data_dir=data_dir,
            log_level=log_level,
            public_api=public_api or None,
            secure_cookies=secure_cookies or None,
            serve_workers=workers,
            serve_threads=threads,
        )
        from pypi_pulse.preflight import check_sink_for_reading

        check_sink_for_reading(s.sink_url)  # else it would start, and answer every request with a 500
        server.server_name(s)  # neither server installed: said now, in one line
        if not UserStore(s.data_dir).names():
            err.print(
                f"[yellow]warning:[/] no dashboard users in {s.data_dir}: add one with "
                "`pypi-pulse users add NAME --password-stdin`",
                highlight=False,
                soft_wrap=True,
            )
        _check_port_free(s.host, s.port)

        def ready(name: str) -> None:
            shape = (
                f"{s.serve_workers} workers x {s.serve_threads} threads"
                if name == "gunicorn"
                else f"{s.serve_threads} threads"
            )
            err.print(
                f"dashboard: http://{s.host}:{s.port} (sink {s.sink_url}; {name}, {shape}; Ctrl-C stops it)",
                highlight=False,
                soft_wrap=True,
            )

        server.run(s, ready)

    users = typer.Typer(
        help="Manage dashboard accounts (stored as argon2 hashes in DATA_DIR/users.json).", no_args_is_help=True
    )
    app.add_typer(users, name="users")

    def store_for(config, data_dir):
        from pypi_pulse.dashboard.users import UserStore

        return UserStore(settings(config, data_dir=data_dir).data_dir)

    @users.command("add")
    def users_add(
        name: Annotated[str, typer.Argument(help="User name.")],
        password_stdin: Annotated[
            bool, typer.Option("--password-stdin", help="Read the password from the first line of stdin (for scripts).")
        ] = False,
        config: ConfigOpt = None,
        data_dir: DataDirOpt = None,
    ) -> None:
        """Add a user; asks for the password twice unless --password-stdin."""
        store = store_for(config, data_dir)
        if password_stdin:
            password = sys.stdin.readline().rstrip("\r\n")
            if not password:
                raise UserError(
                    'no password on stdin: pipe one in, e.g. `echo "$PASS" | pypi-pulse users add NAME --password-stdin`'
                )
        else:
            password = typer.prompt("Password", hide_input=True, confirmation_prompt=True)
        store.add(name, password)
        err.print(f"user {name} added")

    @users.command("remove")
    def users_remove(
        name: Annotated[str, typer.Argument(help="User name.")], config: ConfigOpt = None, data_dir: DataDirOpt = None
    ) -> None:
        """Remove a user; their sessions and API tokens stop working at once."""
        store_for(config, data_dir).remove(name)
        err.print(f"user {name} removed")

    @users.command("list")
    def users_list(config: ConfigOpt = None, data_dir: DataDirOpt = None) -> None:
        """List users (never passwords)."""
        from datetime import datetime

        rows = store_for(config, data_dir).describe()
        if not rows:
            err.print("no users yet: add one with `pypi-pulse users add NAME --password-stdin`")
            return
        table = Table("user", "created (UTC)", "API tokens")
        for r in rows:
            created = datetime.fromtimestamp(r["created"], UTC).strftime("%Y-%m-%d %H:%M") if r["created"] else "-"
            table.add_row(r["name"], created, str(r["tokens"]))
        Console().print(table)

    @users.command("token")
    def users_token(
        name: Annotated[str, typer.Argument(help="User name.")], config: ConfigOpt = None, data_dir: DataDirOpt = None
    ) -> None:
        """Create an API token for scripts (send it as `Authorization: Bearer TOKEN`); it is printed only once."""
        token = store_for(config, data_dir).new_token(name)
        print(token)
