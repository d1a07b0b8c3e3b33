"""pypi-pulse: live, per-second monitoring and history of PyPI downloads."""

__version__ = "0.1.0"
