"""Live runs, shared by benchmarks 2 (latency.py) and 5 (memory.py): the embedded broker, the real producer
(`pypi-pulse produce --source synthetic`, events stamped now) and the real `pypi-pulse dataflow` command with the
settings `up` gives it, each in its own process, while this process polls the SQLite sink and the history.

The dataflow is the CLI command, not a FlowConfig built here, so that the run measures what `up` runs: its detail
folding, its live block hand-over, its metrics endpoint and its recovery store. Sealed rollup blocks are seen as
the Parquet files each shard writes into the history (sink/history.py): a file's modification time is when that
shard's part of the block was written, which dates the seconds "while a block goes in" without any log parsing.
"""

from __future__ import annotations

import math
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path
from statistics import median
from typing import Optional

import _common as C

WARMUP_S = 10.0  # windows this soon after the producer starts are left out (processes and clients warming up)
TAIL_S = 2.0  # nor the last ones, which the producer's stop cuts short
WRITE_MARGIN_S = 90.0  # time allowed, after a block can seal, for it to be merged and written before the run ends
LEAD_S = 30.0  # a block counts as whole when the producer started at least this long before it
AFTER_WRITE_S = 5.0  # windows ending this soon after a block's last file are still counted as "while it goes in"


def block_s() -> int:
    from pypi_pulse.dataflow.clock import BLOCK_S

    return BLOCK_S


def start_phase(seconds: float, whole_blocks: int, lateness_s: float) -> tuple[float, float]:
    """The range of phases (wall-clock seconds past a block boundary) at which to start the producer so that the run
    holds `whole_blocks` whole blocks, each sealed and written before it ends."""
    b = block_s()
    earliest = b + whole_blocks * b + lateness_s + WRITE_MARGIN_S - seconds
    latest = b - LEAD_S
    if earliest > latest:
        need = whole_blocks * b + lateness_s + WRITE_MARGIN_S + LEAD_S
        raise SystemExit(
            f"{seconds:.0f} s cannot hold {whole_blocks} whole block(s) sealed and written with --lateness "
            f"{lateness_s:g}: pass --seconds {need:.0f} or more"
        )
    return max(0.0, earliest), latest


def whole_blocks_in(seconds: float, lateness_s: float) -> int:
    """The most whole blocks a run of `seconds` can hold sealed and written, started at the best phase."""
    return max(0, math.floor((seconds - lateness_s - WRITE_MARGIN_S - LEAD_S) / block_s()))


def wait_for_phase(phase: tuple[float, float]) -> None:
    """Returns once the wall clock is inside `phase` (seconds past a block boundary)."""
    b = block_s()
    lo, hi = phase
    now = time.time() % b
    if lo <= now <= hi:
        return
    wait = (lo - now) % b
    print(f"waiting {wait:.0f} s to start {lo:.0f}-{hi:.0f} s past a {b // 60}-minute boundary", flush=True)
    deadline = time.time() + wait
    while not lo <= time.time() % b <= hi and time.time() < deadline + 1:
        time.sleep(min(1.0, max(0.05, deadline - time.time())))


class BlockFiles:
    """The sealed blocks' files in the history, with when each was written (its modification time)."""

    def __init__(self, root: Path):
        self.root = root
        self.files: dict[str, tuple[int, int, int, int, float]] = {}  # name -> (start, span, shard, of, mtime)

    def poll(self) -> None:
        from pypi_pulse.sink.history import History

        if not self.root.exists():
            return
        for day in History(self.root, readonly=True).listing():
            for name, key in day.blocks.items():
                if name not in self.files:
                    self.files[name] = (*key, day.stamps[name][1] / 1e9)

    def blocks(self) -> list[dict]:
        """One entry a block, oldest first: its range, how many shard files of how many, and when they were
        written."""
        out: dict[tuple[int, int], dict] = {}
        for start, span, _shard, of, at in self.files.values():
            b = out.setdefault((start, span), {"start": start, "span": span, "of": of, "files": 0, "written": []})
            b["files"] += 1
            b["written"].append(at)
        for b in out.values():
            b["first_written"], b["last_written"] = min(b["written"]), max(b["written"])
        return [out[k] for k in sorted(out)]


def live_run(
    rate: float,
    seconds: float,
    work: Path,
    sampler: C.RssSampler,
    poll_s: float = 0.05,
    report_every_s: float = 60.0,
    epoch_s: float = 10.0,
    recovery: bool = False,
    lateness_s: float = 600.0,
    pack_events: int = 1000,
    flow_log_level: str = "warning",
    phase: Optional[tuple[float, float]] = None,
    max_rss: float = 10 * 2**30,
) -> dict:
    """Run the stream at `rate` for `seconds` and time every 1-second window closed after the warm-up: the delay
    from its end (wall clock) to the moment its row was written (`written_at`) and first seen here."""
    import pypi_pulse
    from pypi_pulse import command_lines
    from pypi_pulse.broker import free_port
    from pypi_pulse.config import Settings
    from pypi_pulse.producer.synthetic import rhythm

    print(f"code measured: {Path(pypi_pulse.__file__).parent}", flush=True)  # PYTHONPATH can point at a frozen copy
    # the broker is embedded, as in `up`: its producer linger, unless PYPI_PULSE_LINGER_MS says otherwise
    linger_ms = Settings().linger_ms_for(embedded_broker=True)
    print(f"producer linger: {linger_ms} ms, events per message: {pack_events}", flush=True)
    broker = C.start_broker(work)
    topic = "bench-live"
    sink = work / "live.db"
    history = work / "history"
    producer = flow = None
    env = dict(os.environ, PYPI_PULSE_EPOCH_SECONDS=str(epoch_s), PYPI_PULSE_LINGER_MS=str(linger_ms))
    try:
        C.create_topic(broker.bootstrap, topic)
        sampler.watch("broker", broker.proc.pid)
        sampler.watch("poller", os.getpid())
        flow_log = open(work / "dataflow.log", "w")
        flow = subprocess.Popen(
            command_lines.dataflow(
                broker.bootstrap,
                topic,
                f"sqlite:///{sink}",
                work / "data",
                "--history",
                str(history),
                "--recovery" if recovery else "--no-recovery",
                "--lateness-seconds",
                str(lateness_s),
                "--metrics-port",
                str(free_port()),  # as `up`: the dataflow serves its metrics
                "--log-level",
                flow_log_level,
            ),
            stdout=flow_log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        sampler.watch("dataflow", flow.pid, tree=True)  # every process of it, should it start a local cluster
        deadline = time.monotonic() + 60
        while not sink.exists():  # the sink file appears once the dataflow has opened it
            if time.monotonic() > deadline or flow.poll() is not None:
                raise SystemExit(f"the dataflow did not start: {(work / 'dataflow.log').read_text()[-2000:]}")
            time.sleep(0.05)
        if phase is not None:
            wait_for_phase(phase)
        started = time.time()
        # the synthetic source follows PyPI's daily and weekly rhythm around its mean rate: ask for the mean that
        # gives `rate` now (the rhythm moves by a few percent an hour)
        producer = subprocess.Popen(
            command_lines.produce(
                broker.bootstrap,
                topic,
                work / "producer",
                "--source",
                "synthetic",
                "--rate",
                str(rate / rhythm(started)),
                "--duration",
                str(seconds),
                "--seed",
                "1",
                "--pack-events",
                str(pack_events),
                "--no-progress",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        sampler.watch("producer", producer.pid)
        blocks = BlockFiles(history)
        db = None
        written: dict[int, float] = {}
        seen: dict[int, float] = {}
        downloads: dict[int, int] = {}
        distinct: dict[int, int] = {}
        last_report = last_listing = time.monotonic()
        aborted: Optional[str] = None
        while producer.poll() is None:
            if db is None:
                db = sqlite3.connect(f"file:{sink}?mode=ro", uri=True, timeout=30)
            newest = max(written, default=0)
            now = time.time()
            try:
                rows = db.execute(
                    "SELECT start, written_at, downloads, unique_packages FROM windows WHERE start >= ?",
                    (newest - 5,),
                ).fetchall()
            except sqlite3.OperationalError:  # the dataflow is still creating the schema
                rows = []
            for start, at, n, u in rows:
                if start not in written:
                    written[start], seen[start] = at, now
                downloads[start], distinct[start] = n, u
            if time.monotonic() - last_listing >= 1.0:
                last_listing = time.monotonic()
                blocks.poll()
            if time.monotonic() - last_report >= report_every_s:
                last_report = time.monotonic()
                rss = {k: C.mib(v[-1][1]) for k, v in sampler.series.items() if v}
                cores = {k: round(v, 2) for k, v in sampler.cores(time.time() - report_every_s).items()}
                lag = time.time() - (max(written, default=0) + 1)
                print(
                    f"  {time.time() - started:,.0f} s: {len(written)} windows (newest {lag:.1f} s behind), "
                    f"{len(blocks.blocks())} blocks written, RSS {rss}, cores {cores}",
                    flush=True,
                )
            rss_now = {k: v[-1][1] for k, v in sampler.series.items() if v}
            if sum(rss_now.values()) > max_rss:  # the machine is shared: a run that cannot keep up must not take it
                aborted = f"stopped at {time.time() - started:,.0f} s: RSS over {C.mib(int(max_rss))} in all: " + (
                    ", ".join(f"{k} {C.mib(v)}" for k, v in rss_now.items())
                )
                print(aborted, flush=True)
                break
            time.sleep(poll_s)
        if aborted is None and producer.returncode != 0:
            raise SystemExit(f"producer failed ({producer.returncode}): {producer.stderr.read()[-2000:]}")
        ended = time.time()
        blocks.poll()
        # windows closed while the stream ran steadily: after the warm-up, and not the tail the producer's stop leaves
        due = range(math.ceil(started + WARMUP_S), math.floor(ended - TAIL_S - 1) + 1)
        steady = [s for s in due if s in written]
        return {
            "write_delay": sorted(written[s] - (s + 1) for s in steady),
            "seen_delay": sorted(seen[s] - (s + 1) for s in steady),
            "windows": len(steady),
            "windows_due": len(due),
            "events_per_window": median(downloads[s] for s in steady) if steady else 0,
            "distinct_per_window": sorted(distinct[s] for s in steady),
            "events_counted": sum(downloads.values()),  # every window the dataflow wrote, warm-up and tail too
            "seconds": ended - started,
            "started": started,
            "ended": ended,
            "blocks": blocks.blocks(),
            "seen_by_window": {s: seen[s] - (s + 1) for s in steady},
            "aborted": aborted,
        }
    finally:
        # each child is stopped even when another ignores its signal (a producer flushing a backlog the broker
        # never acknowledges would otherwise leave the dataflow and the broker running)
        if producer is not None:
            C.stop_process(producer, signal.SIGTERM, 30)
        if flow is not None:
            C.stop_process(flow, signal.SIGINT, 60)
        broker.stop()


def spread(sorted_values: list[float], empty: str = "none") -> str:
    if not sorted_values:
        return empty
    return (
        f"p50 {C.percentile(sorted_values, 0.5):.3f} s, p99 {C.percentile(sorted_values, 0.99):.3f} s, "
        f"max {sorted_values[-1]:.3f} s"
    )


def block_cycles(sampler: C.RssSampler, name: str, lateness_s: float, since: float = 0.0) -> list[dict]:
    """The RSS of process `name` per block cycle: a rollup block gathers every key of its 10 minutes until it is
    sealed (its end plus the lateness horizon), then it is merged, written and freed, so the state has the period of
    the blocks. Each cycle runs from one seal to the next: its peak, and the median of its last 30 s (the block
    whole, just before its seal). `whole`: the run covered the cycle from its beginning to its end; `since` (wall
    clock, the producer's start) leaves out the samples taken while the run waited to start."""
    series = sampler.series.get(name) or []
    if not series:
        return []
    b = block_s()
    wall = [(sampler.started_wall + t, v) for t, v in series if sampler.started_wall + t >= since]
    if not wall:
        return []
    first, last = wall[0][0], wall[-1][0]
    out = []
    seal = (math.floor((first - lateness_s) / b)) * b + lateness_s  # the last seal at or before the first sample
    while seal < last:
        nxt = seal + b
        vals = [v for t, v in wall if seal <= t < nxt]
        before = [v for t, v in wall if nxt - 30 <= t < nxt]
        if vals:
            out.append(
                {
                    "block_end": nxt - lateness_s,  # the block this cycle gathers and then seals at its end
                    "from": seal,
                    "to": nxt,
                    "peak": max(vals),
                    "before_seal": median(before) if before and nxt <= last else None,
                    "whole": first <= seal and nxt <= last,
                }
            )
        seal = nxt
    return out


def print_block_cycles(sampler: C.RssSampler, name: str, lateness_s: float, since: float = 0.0) -> None:
    from datetime import UTC, datetime

    cycles = block_cycles(sampler, name, lateness_s, since)
    if not cycles:
        print(f"{name}: not sampled")
        return
    cells = []
    for c in cycles:
        label = f"{datetime.fromtimestamp(c['block_end'] - block_s(), UTC):%H:%M}-{datetime.fromtimestamp(c['block_end'], UTC):%H:%M}"
        before = f", {C.mib(c['before_seal'])} before its seal" if c["before_seal"] is not None else ""
        cells.append(f"{label} peak {C.mib(c['peak'])}{before}{'' if c['whole'] else ' (cycle cut by the run)'}")
    print(f"{name} RSS per block cycle (seal to seal, named by the block gathered): " + "; ".join(cells))
    whole = [c for c in cycles if c["whole"]]
    if len(whole) > 1:
        print(
            f"{name}: growth between whole cycles: peak {(whole[-1]['peak'] - whole[0]['peak']) / 2**20:+,.0f} MiB, "
            f"before seal {(whole[-1]['before_seal'] - whole[0]['before_seal']) / 2**20:+,.0f} MiB "
            f"over {len(whole)} cycles"
        )
    else:
        print(f"{name}: {len(whole)} whole cycle(s): growth from block to block cannot be judged from this run")


def cpu_per_event_line(sampler: C.RssSampler, r: dict, rate: float) -> str:
    """CPU time each process spent per 1,000 events over the whole run, and the cores that makes at `rate`: unlike
    the cores a process got, this does not shrink when other work on the machine takes the CPU (though contention
    still inflates it). The dataflow's events are those of the windows it wrote; the others' what was produced."""
    cells = []
    for name, series in sampler.cpu.items():
        if len(series) < 2:
            continue
        used = series[-1][1] - series[0][1]
        events = r["events_counted"] if name == "dataflow" else rate * r["seconds"]
        if events >= 10_000:  # fewer: start-up dominates
            per_k = used / events * 1000
            cells.append(f"{name} {per_k * 1000:.2f} ms ({per_k * rate / 1000:.2f} cores at {rate:,.0f}/s)")
    return "CPU per 1,000 events: " + ", ".join(cells)


def load_line(when: str) -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {when}: {one:.2f}, {five:.2f}, {fifteen:.2f} ({os.cpu_count()} cores)"
