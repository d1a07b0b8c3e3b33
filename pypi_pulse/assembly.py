"""Components built from settings, shared by the commands (pypi_pulse/cli.py) and batch mode (pypi_pulse/pipeline.py).

Both build the same producer and dataflow from the same settings; keeping the wiring here lets each import it
without importing the other.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from pypi_pulse.config import Settings, parse_speed

if TYPE_CHECKING:
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.dataflow.source import StopOffsets
    from pypi_pulse.producer.publisher import Publisher, Summary
    from pypi_pulse.producer.replay import Export


def file_export(s: Settings, keys: bool) -> Export:
    """The settings' file source opened for replay (producer/replay.Export)."""
    from pypi_pulse.producer.replay import Export

    return Export(
        Path(s.source[5:]),
        order=s.order,
        keys=keys,
        sort_budget=int(s.sort_memory),
        spill_dir=s.data_dir / "replay-sort",
    )


def publisher_for(s: Settings, bootstrap: str) -> Publisher:
    """The settings' publisher, on a broker whose topics exist."""
    from pypi_pulse.producer.delivery import DeliveryOptions
    from pypi_pulse.producer.publisher import Publisher

    return Publisher(
        bootstrap,
        s.topic,
        s.dlq_topic,
        linger_ms=s.linger_ms_for(embedded_broker=False),
        delivery=DeliveryOptions(
            s.broker_outage_log_seconds,
            s.producer_stall_seconds,
            s.producer_stop_seconds,
            max_pending_bytes=int(s.producer_max_pending_bytes),
        ),
        compression=s.compression,
        max_event_bytes=int(s.max_event_bytes),
    )


def produce(
    s: Settings,
    bootstrap: str,
    stop: threading.Event,
    *,
    count: Optional[int] = None,
    duration: Optional[float] = None,
    progress: bool = True,
    export: Optional[Export] = None,
    publisher: Optional[Publisher] = None,
) -> Summary:
    """`export`: the file source already opened (and perhaps sorted) by the caller; `publisher`: one made by
    the caller (`publisher_for`), on a broker whose topics it has created."""
    from pypi_pulse.broker import ensure_topics, wait_for_kafka

    if publisher is None:
        wait_for_kafka(bootstrap)
        ensure_topics(bootstrap, {s.topic: s.partitions, s.dlq_topic: 1})
    from pypi_pulse.producer.replay import replay_file, run_synthetic

    pub = publisher or publisher_for(s, bootstrap)
    pub.stop_on(stop)
    pack = s.pack_events_for(own_topic=False)
    if s.source == "synthetic":
        summary = run_synthetic(pub, s.rate, s.seed, stop, count=count, duration=duration, pack=pack)
    elif s.source.startswith("file:"):
        summary = replay_file(
            pub,
            export or file_export(s, keys=pack == 1),
            parse_speed(s.speed),
            s.restamp,
            stop,
            show_progress=progress and sys.stderr.isatty(),
            pack=pack,
        )
    else:
        from pypi_pulse.producer.bigquery_source import run_bigquery_source

        summary = run_bigquery_source(pub, s, stop)
    summary.end_offsets = dict(pub.end_offsets)
    return summary


def flow_config(
    s: Settings, bootstrap: str, n_partitions: int, drain_idle_s: Optional[float] = None, live: bool = False
) -> FlowConfig:
    from pypi_pulse.dataflow.clock import BATCH_HOLD_EVENTS
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.sink.retry import RetryPolicy

    return FlowConfig(
        bootstrap=bootstrap,
        topic=s.topic,
        dlq_topic=s.dlq_topic,
        n_partitions=n_partitions,
        sink_url=s.sink_url,
        history=s.history_path,
        lateness_s=s.lateness_seconds,
        out_of_order_s=s.out_of_order_seconds,
        idle_s=s.idle_seconds,
        window_retention_s=s.window_retention_hours * 3600,
        rollup_retention_days=s.rollup_retention_days,
        detail_min_daily_downloads=s.rollup_detail_min_downloads,
        drain_idle_s=drain_idle_s,
        hold_blocks_events=0 if live else BATCH_HOLD_EVENTS,
        shards=s.shards,
        future_tolerance_s=s.future_tolerance_seconds,
        max_project_chars=s.max_project_name_chars,
        sink_retry=RetryPolicy(s.sink_retry_initial_seconds, s.sink_retry_max_seconds, s.sink_outage_log_seconds),
        sink_lock_wait_s=s.sink_lock_wait_seconds,
        broker_outage_log_s=s.broker_outage_log_seconds,
        offset_reset_confirm_s=s.offset_reset_confirm_seconds,
    )


def cluster_members(
    s: Settings, process_id: Optional[int], addresses: Optional[str]
) -> tuple[Optional[int], Optional[list[str]]]:
    """This member's index (`--process-id`, else the `process_id` setting, which may be a pod's name) and the
    cluster's addresses (`--addresses` "HOST:PORT;HOST:PORT", or made from `cluster_size` and `cluster_address`),
    checked against the settings' shape."""
    from pypi_pulse.dataflow.membership import generated_members, member_index
    from pypi_pulse.dataflow.runner import check_cluster

    if process_id is None and s.process_id is not None:
        process_id = member_index(s.process_id)
    members = generated_members(s.cluster_size, s.cluster_address, addresses, process_id)
    if members is None and addresses is not None:
        members = addresses.split(";")
    check_cluster(s.processes, process_id, members)
    return process_id, members


def dataflow_config(s: Settings, until_drained: bool) -> FlowConfig:
    """The `dataflow` command's flow, once its metrics are served (healthy while it waits), the broker answers
    and the sink's schema is ready."""
    from pypi_pulse.broker import partition_count, wait_for_kafka

    assert s.bootstrap_servers is not None
    if s.dataflow_metrics_port:
        from pypi_pulse.metrics.endpoint import serve
        from pypi_pulse.metrics.liveness import DATAFLOW

        serve(s.metrics_host, s.dataflow_metrics_port, liveness=DATAFLOW, stale_after_s=s.healthz_stale_seconds)
    wait_for_kafka(s.bootstrap_servers)
    n = partition_count(s.bootstrap_servers, s.topic)
    check_sink(s)
    drain = s.idle_seconds if until_drained else None
    return flow_config(s, s.bootstrap_servers, n, drain_idle_s=drain, live=not until_drained)


def run_dataflow(
    s: Settings,
    cfg: FlowConfig,
    *,
    recovery: bool,
    metrics: bool = False,
    process_id: Optional[int] = None,
    addresses: Optional[list[str]] = None,
    stop_offsets: Optional[StopOffsets] = None,
) -> None:
    """The dataflow in the settings' shape (workers, processes), or as member `process_id` of the cluster at
    `addresses`. With `metrics`, the members a local cluster starts serve theirs on the dataflow's metrics port + i
    (member 0, this process, serves its own where the command does)."""
    from pypi_pulse.dataflow import runner

    port = s.dataflow_metrics_port
    runner.run_dataflow(
        cfg,
        workers=s.workers,
        processes=s.processes,
        process_id=process_id,
        addresses=addresses,
        epoch_s=s.epoch_seconds,
        recovery_dir=s.recovery_dir if recovery else None,
        stop_offsets=stop_offsets,
        metrics=runner.MetricsEndpoint(s.metrics_host, port, s.healthz_stale_seconds) if metrics and port else None,
        cluster_wait_s=s.cluster_wait_seconds,
        cluster_stop_s=s.cluster_stop_seconds,
    )


def check_sink(s: Settings) -> None:
    from pypi_pulse.sink.base import open_sink

    # creates/migrates the schema now, so a bad URL fails before the dataflow starts
    open_sink(s.sink_url, history=s.history_path).close()
