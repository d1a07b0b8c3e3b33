"""Fixtures of the dashboard tests. The shared constants and helpers live in `dashboard_testing.py`, which tests
import by that name: `from conftest import` is ambiguous with several conftest.py files in one run."""

from dashboard_testing import browser, data_dir, filled_sink, server  # noqa: F401  (fixtures)
