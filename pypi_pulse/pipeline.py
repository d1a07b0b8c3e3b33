"""Batch mode: one source through the real broker, dataflow and sink, ending when every event is stored.

The producer runs in a child process (the machine has two cores and the dataflow wants one of them); when it has
flushed, it reports the exact offsets Kafka acknowledged, and the dataflow stops at those offsets. The broker's own
end offsets are not trusted for this (Tansu reports them too low).
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import threading
import time
from typing import Optional

from pypi_pulse.assembly import check_sink, file_export, flow_config, produce, publisher_for, run_dataflow
from pypi_pulse.config import Settings
from pypi_pulse.errors import UserError


def _producer_child(s: Settings, count: Optional[int], show_progress: bool, boot, conn) -> None:
    """Opens (and sorts) a file source first, while the parent starts the broker; its publisher is made as soon as
    the broker's address comes, meanwhile: librdkafka's idempotent producer asks for its producer id on a 500 ms
    timer, and a publisher made after the sort held the first events back for up to half a second."""
    from pypi_pulse import logs

    logs.setup(s.log_level, s.log_format)
    try:
        connected: dict = {}

        def connect() -> None:
            try:
                connected["bootstrap"] = boot.recv()
            except EOFError:  # the parent failed before it had a broker
                return
            try:
                connected["publisher"] = publisher_for(s, connected["bootstrap"])
            except BaseException as exc:  # raised below, in the child's main thread
                connected["error"] = exc

        connecting = threading.Thread(target=connect, name="connect", daemon=True)
        connecting.start()
        export = None
        if s.source.startswith("file:"):
            export = file_export(s, keys=s.pack_events_for(own_topic=False) == 1).prime()
        connecting.join()
        if "error" in connected:
            raise connected["error"]
        if "bootstrap" not in connected:
            return
        summary = produce(
            s,
            connected["bootstrap"],
            threading.Event(),
            count=count,
            progress=show_progress,
            export=export,
            publisher=connected["publisher"],
        )
        conn.send({"ok": True, "summary": summary.as_dict(), "end_offsets": summary.end_offsets})
    except UserError as exc:
        conn.send({"ok": False, "error": str(exc)})
    except BaseException as exc:  # report, never leave the dataflow waiting forever
        conn.send({"ok": False, "error": f"{type(exc).__name__}: {exc}"})


def _hand_over(parent, proc, report: dict, stop_file) -> None:
    """Waits for the producer's report and hands its offsets (or its failure) to the dataflow's members."""
    while not parent.poll(0.05):
        if not proc.is_alive() and not parent.poll():
            report.update(ok=False, error=f"producer exited with code {proc.exitcode} without a report")
            stop_file.write(abort=report["error"])
            return
    try:
        report.update(parent.recv())
    except EOFError:
        report.update(ok=False, error=f"producer exited with code {proc.exitcode} without a report")
    if report.get("ok"):
        stop_file.write(offsets=report["end_offsets"])
    else:
        stop_file.write(abort=str(report.get("error")))


def run_batch(s: Settings, count: Optional[int] = None, show_progress: bool = False) -> dict:
    from pypi_pulse.broker import EmbeddedBroker, ensure_topics, wait_for_kafka
    from pypi_pulse.sink.base import open_sink

    started = time.monotonic()
    # the run's topic is its own (a fresh broker, or a topic named for the run)
    s = s.model_copy(update={"pack_events": s.pack_events_for(own_topic=True)})
    if s.source.startswith("file:"):
        from pathlib import Path

        from pypi_pulse.producer.files import detect_format

        path = Path(s.source[5:])
        if not path.is_file():
            raise UserError(f"input file {path} does not exist: check the path after file:")
        detect_format(path)
    check_sink(s)
    if s.bootstrap_servers:
        wait_for_kafka(s.bootstrap_servers)
        # a shared cluster may already hold events in the default topic: a run reads only its own
        s = s.model_copy(update={"topic": f"{s.topic}-run-{int(time.time() * 1000)}"})
    else:
        s = s.model_copy(update={"linger_ms": s.linger_ms_for(embedded_broker=True)})
    # The producer starts first, before this process imports the dataflow: it reads and sorts a file source on
    # the other core while the broker starts.
    ctx = multiprocessing.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    boot_in, boot_out = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_producer_child, args=(s, count, show_progress, boot_in, child), daemon=True)
    proc.start()
    broker = None
    try:
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if s.bootstrap_servers:
            bootstrap = s.bootstrap_servers
        else:
            broker = EmbeddedBroker(port=0, log_path=s.data_dir / "broker.log").start()
            bootstrap = broker.bootstrap
        n = ensure_topics(bootstrap, {s.topic: s.partitions, s.dlq_topic: 1})[s.topic]
        boot_out.send(bootstrap)
        from pypi_pulse.dataflow.runner import StopOffsetsFile

        report: dict = {}
        # Every member of the dataflow reads the producer's offsets from this file (a member in another process
        # cannot read the pipe); a failed producer's report ends their inputs. Named for this run: a file left by
        # another would stop it at that run's offsets.
        stop_file = StopOffsetsFile(s.data_dir / f"stop-offsets-{os.getpid()}-{time.time_ns()}.json")
        reporter = threading.Thread(target=_hand_over, args=(parent, proc, report, stop_file), daemon=True)
        reporter.start()
        # Every partition holds the watermark until it reaches its stop offset: a partition waiting for the
        # producer (still sorting a large export, say) is not idle, and letting the others run ahead would make
        # its events late.
        cfg = dataclasses.replace(flow_config(s, bootstrap, n), idle_s=math.inf)
        try:
            run_dataflow(s, cfg, recovery=False, stop_offsets=stop_file)
        finally:
            stop_file.path.unlink(missing_ok=True)
        reporter.join(10)
        proc.join(10)
        if not report.get("ok"):
            raise UserError(f"producer failed: {report.get('error')}")
    finally:
        boot_out.close()
        if broker:
            broker.stop()
    elapsed = time.monotonic() - started
    with open_sink(s.sink_url, readonly=True, history=s.history_path) as db:
        stats = db.stats()
    c = stats.counters if stats else {}
    produced = report["summary"]
    counted = c.get("counted", 0)
    result = {
        "events_read": produced["read"],
        "sent": produced["sent"],
        "failed": produced["failed"],
        "dead_lettered": produced["dead_lettered"] + c.get("dead_lettered", 0),
        "counted": counted,
        "late": c.get("late", 0),
        "dropped": c.get("dropped", 0),
        "seconds": round(elapsed, 3),
        "events_per_second": round(produced["read"] / elapsed) if elapsed else 0,
    }
    if produced.get("input_error"):
        result["input_error"] = produced["input_error"]  # the CLI prints the summary, then fails with it (exit 2)
    consumed = c.get("consumed", 0)
    if consumed != produced["sent"] or counted + c.get("dropped", 0) + c.get("dead_lettered", 0) != consumed:
        raise UserError(
            f"accounting mismatch: sent {produced['sent']}, consumed {consumed}, counted {counted}: {result}"
        )
    return result
