"""The web server's limits, taken from the settings (pypi_pulse/config.py defines them and their defaults).

The dashboard's modules receive one `WebLimits` instead of the whole `Settings`, so that an app built in a test
without a config file gets exactly the defaults that `pypi-pulse serve` would use.
"""

from __future__ import annotations

from dataclasses import dataclass

from pypi_pulse.config import Settings


@dataclass(frozen=True)
class WebLimits:
    signin_checks: int
    signin_wait_seconds: float
    max_request_bytes: int
    max_response_bytes: int
    max_chart_series: int
    max_name_chars: int
    lateness_seconds: float = 600.0  # after this, a closed window is final (the daily pattern caches such hours)
    live_gap_seconds: int = 10  # the Live rate chart draws a longer run of seconds without a window as a gap
    live_top_max_window_seconds: int = 3600  # GET /api/live/top?window=N
    signin_claim_seconds: float = 30.0  # a sign-in's claim on its address and user name lapses after this

    @classmethod
    def from_settings(cls, s: Settings) -> WebLimits:
        return cls(
            s.signin_checks,
            s.signin_wait_seconds,
            int(s.max_request_bytes),
            int(s.max_response_bytes),
            s.max_chart_series,
            s.max_name_chars,
            s.lateness_seconds,
            live_gap_seconds=s.live_gap_seconds,
            live_top_max_window_seconds=s.live_top_max_window_seconds,
            signin_claim_seconds=s.signin_claim_seconds,
        )

    @classmethod
    def defaults(cls) -> WebLimits:
        """Defaults overridden by `PYPI_PULSE_*` variables, as `serve` without flags or config file would have them."""
        return cls.from_settings(Settings.model_validate({}))
