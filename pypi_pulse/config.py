"""Every setting of pypi-pulse, defined once: flags, `PYPI_PULSE_*` environment variables and a TOML file.

Precedence (highest first): command-line flags, environment, `--config FILE` (or `PYPI_PULSE_CONFIG`), defaults.
Values are validated at start so that a bad one fails fast with a message that says how to fix it. The fields
are declared in two groups, the pipeline's (`config_pipeline`) and serving's (`config_serving`); `Settings` here is
the one set every command reads.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

from pydantic import ValidationError, field_validator
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict, TomlConfigSettingsSource

from pypi_pulse.config_pipeline import (  # noqa: F401 - the constants are part of this module's interface
    DEFAULT_BROKER_OUTAGE_LOG_S,
    DEFAULT_COMPRESSION,
    DEFAULT_DATA_DIR,
    DEFAULT_LINGER_MS,
    DEFAULT_OFFSET_RESET_CONFIRM_S,
    DEFAULT_PRODUCER_MAX_PENDING_BYTES,
    DEFAULT_PRODUCER_STALL_S,
    DEFAULT_PRODUCER_STOP_S,
    DEFAULT_SHARDS,
    EMBEDDED_LINGER_MS,
    OWN_TOPIC_PACK_EVENTS,
    PipelineSettings,
)
from pypi_pulse.config_serving import ServingSettings
from pypi_pulse.errors import UserError


class Settings(ServingSettings, PipelineSettings):
    model_config = SettingsConfigDict(env_prefix="PYPI_PULSE_", extra="forbid", validate_default=True)

    _config_file: Optional[Path] = None

    @field_validator("source")
    @classmethod
    def _check_source(cls, v: str) -> str:
        if v in ("synthetic", "bigquery"):
            return v
        if v.startswith("file:"):
            from pypi_pulse.preflight import unreadable_file

            problem = unreadable_file(Path(v[5:]))
            if problem:
                raise ValueError(f"input file {problem}: pass file:PATH of an export (NDJSON, CSV or Parquet)")
            return v
        raise ValueError("must be 'synthetic', 'bigquery' or 'file:PATH'")

    @field_validator("credentials")
    @classmethod
    def _check_credentials(cls, v: Optional[Path]) -> Optional[Path]:
        from pypi_pulse.preflight import unreadable_file

        problem = v is not None and unreadable_file(v.expanduser())
        if problem:
            raise ValueError(
                f"credentials file {problem}: pass a service-account JSON key, or drop it to use "
                "Application Default Credentials"
            )
        return v

    @field_validator("data_dir")
    @classmethod
    def _check_data_dir(cls, v: Path) -> Path:
        if v.exists() and not v.is_dir():
            raise ValueError(f"{v} is not a directory: pass a directory (it is created if missing)")
        return v

    @field_validator("speed")
    @classmethod
    def _check_speed(cls, v: str) -> str:
        parse_speed(v)
        return v

    @field_validator("process_id")
    @classmethod
    def _check_process_id(cls, v: Optional[str]) -> Optional[str]:
        from pypi_pulse.dataflow.membership import member_index

        if v is not None:
            member_index(v)
        return v

    @field_validator("cluster_address")
    @classmethod
    def _check_cluster_address(cls, v: Optional[str]) -> Optional[str]:
        from pypi_pulse.dataflow.membership import check_address_pattern

        if v is not None:
            check_address_pattern(v)
        return v

    @field_validator("sink")
    @classmethod
    def _check_sink(cls, v: Optional[str]) -> Optional[str]:
        if v is None or v.startswith(("sqlite:///", "postgresql://", "postgres://")):
            return v
        raise ValueError("must look like sqlite:///path/to.db or postgresql://user:pass@host:5432/db")

    @field_validator("history")
    @classmethod
    def _check_history(cls, v: Optional[str]) -> Optional[str]:
        from pypi_pulse.preflight import history_problem

        problem = v is not None and history_problem(v)
        if problem:
            raise ValueError(problem)
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        cfg = os.environ.get("PYPI_PULSE_CONFIG_FILE_RESOLVED")
        if cfg:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cfg))
        return tuple(sources)

    def linger_ms_for(self, embedded_broker: bool) -> int:
        """The producer's linger: as set, else longer on the embedded broker, whose cost grows with its batches."""
        if self.linger_ms is not None:
            return self.linger_ms
        return EMBEDDED_LINGER_MS if embedded_broker else DEFAULT_LINGER_MS

    def up_component_metrics_ports(self) -> tuple[int, int]:
        """The producer's and the dataflow's /metrics ports under `up`: as set, else beside the exporter's."""
        return (
            self.producer_metrics_port or self.metrics_port + 1,
            self.dataflow_metrics_port or self.metrics_port + 2,
        )

    def pack_events_for(self, own_topic: bool) -> int:
        """Events per Kafka message: as set, else packed only on a topic that pypi-pulse alone reads."""
        return self.pack_events or (OWN_TOPIC_PACK_EVENTS if own_topic else 1)

    @property
    def sink_url(self) -> str:
        return self.sink or f"sqlite:///{self.data_dir / 'pypi-pulse.db'}"

    @property
    def history_path(self) -> str:
        """Where the rollup history lives: `history`, else beside a SQLite sink (DATA_DIR/history for the default
        one), else DATA_DIR/history."""
        from pypi_pulse.sink.base import default_history
        from pypi_pulse.sink.history import history_path

        if self.history:
            return self.history
        return str(
            default_history(self.sink_url) if self.sink_url.startswith("sqlite:///") else history_path(self.data_dir)
        )

    @property
    def recovery_dir(self) -> Path:
        return self.data_dir / "recovery"


def parse_speed(v: str) -> Optional[float]:
    """`realtime` → 1.0, `10x` → 10.0, `max` → None (no pacing)."""
    s = v.strip().lower()
    if s == "max":
        return None
    if s == "realtime":
        return 1.0
    try:
        f = float(s[:-1] if s.endswith("x") else s)
    except ValueError:
        f = -1.0
    if f <= 0:
        raise ValueError(f"speed {v!r} must be 'realtime', 'max' or a positive multiplier like '10x'")
    return f


def load_settings(config_file: Optional[Path] = None, **overrides: Any) -> Settings:
    """Build settings from flags (overrides), environment and an optional TOML file; fail with a fixable message."""
    config_file = config_file or (
        Path(os.environ["PYPI_PULSE_CONFIG"]) if os.environ.get("PYPI_PULSE_CONFIG") else None
    )
    in_file: dict = {}
    if config_file is not None:
        in_file = _read_config_file(config_file)
        os.environ["PYPI_PULSE_CONFIG_FILE_RESOLVED"] = str(config_file)
    else:
        os.environ.pop("PYPI_PULSE_CONFIG_FILE_RESOLVED", None)
    clean = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**clean)
    except ValidationError as exc:
        err = exc.errors()[0]
        field = ".".join(str(p) for p in err["loc"]) or "config"
        extra = Settings.model_fields[field].json_schema_extra if field in Settings.model_fields else None
        named = extra.get("flag") if isinstance(extra, dict) else None
        flag = named if isinstance(named, str) else "--" + field.replace("_", "-")
        env = "PYPI_PULSE_" + field.upper()
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden" and field in in_file:
            raise UserError(
                f"config file {config_file}: unknown setting {field!r}: its keys are setting names, "
                "like the flags without -- and with _ (rate, sink, lateness_seconds)"
            ) from None
        if field in in_file and field not in clean and env not in os.environ:
            flag += f" / {field} in {config_file}"
        raise UserError(f"invalid {field} ({flag} / {env}): {msg}") from None


def _read_config_file(path: Path) -> dict:
    """The TOML file's settings, read once here so that a broken file is one line naming it, the line and the
    problem (pydantic-settings reads it again, with the other sources)."""
    import tomllib

    from pypi_pulse.preflight import unreadable_file

    problem = unreadable_file(path)
    if problem:
        raise UserError(f"config file {problem}: pass an existing TOML file to --config (or PYPI_PULSE_CONFIG)")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"config file {path} is not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise UserError(
            f"config file {path} is not UTF-8 text ({exc.reason} at byte {exc.start}): save it as UTF-8 TOML"
        ) from None
