"""Running the dataflow in this process, with Bytewax recovery when asked."""

from __future__ import annotations

import shutil
from datetime import timedelta
from pathlib import Path
from typing import Optional

import structlog
from bytewax.recovery import RecoveryConfig, init_db_dir
from bytewax.run import cli_main

from pypi_pulse.dataflow.flow import FlowConfig, build_flow
from pypi_pulse.dataflow.source import StopOffsets

log = structlog.get_logger(__name__)
SPILL_DIR = "spill"  # inside the recovery directory: deleted with it (dataflow/spill.py)


def prepare_recovery(recovery_dir: Path, fresh: bool) -> RecoveryConfig:
    """Create the recovery store on first use; `fresh` discards state that no longer matches the topic
    (the embedded broker is memory-only, so its offsets die with it)."""
    if fresh and recovery_dir.exists():
        shutil.rmtree(recovery_dir)
    if not recovery_dir.exists() or not any(recovery_dir.iterdir()):
        recovery_dir.mkdir(parents=True, exist_ok=True)
        init_db_dir(recovery_dir, 1)
    return RecoveryConfig(str(recovery_dir))


def run_dataflow(
    cfg: FlowConfig,
    *,
    workers: int = 1,
    epoch_s: float = 2.0,
    recovery_dir: Optional[Path] = None,
    fresh_recovery: bool = False,
    stop_offsets: Optional[StopOffsets] = None,
) -> None:
    recovery = prepare_recovery(recovery_dir, fresh_recovery) if recovery_dir else None
    flow = build_flow(
        cfg,
        stop_offsets,
        snapshots=recovery_dir is not None,
        spill_dir=recovery_dir / SPILL_DIR if recovery_dir else None,
    )
    log.info(
        "dataflow.start",
        topic=cfg.topic,
        partitions=cfg.n_partitions,
        sink=cfg.sink_url,
        workers=workers,
        recovery=str(recovery_dir) if recovery_dir else None,
    )
    cli_main(flow, workers_per_process=workers, epoch_interval=timedelta(seconds=epoch_s), recovery_config=recovery)
