"""Errors a user can fix: the CLI prints them as one line and exits 2, never a traceback."""


class UserError(Exception):
    """Something the user can fix (bad flag, missing file, unreachable broker); the message says how."""


class EmptySink(UserError):
    """The sink is a database, but pypi-pulse has not created its tables there yet (the dataflow does)."""
