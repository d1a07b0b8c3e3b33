"""The producer's RSS while its broker is starved: `pypi-pulse produce` (synthetic, packed as `up` packs on the
embedded broker) at PyPI's rate against an embedded broker that is stopped (SIGSTOP) for a while, or given only a
share of each second (`--duty`), then let run again.

    python3 benchmarks/producer_memory.py                      # 66,000 events/s, broker stopped 40 s
    python3 benchmarks/producer_memory.py --duty 0.1           # broker runs 0.1 s of each second for 40 s
    python3 benchmarks/producer_memory.py --pending-bytes 64MiB

Prints a line a second (the producer's RSS, the events it read and Kafka acknowledged, the bytes it holds
unacknowledged, its metric pypi_pulse_producer_pending_bytes) and the peaks before, during and after the stall.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402
from pypi_pulse.broker import EmbeddedBroker, ensure_topics, free_port  # noqa: E402


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except FileNotFoundError:
        pass
    return 0.0


def scrape(port: int) -> dict[str, float]:
    try:
        text = requests.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except requests.RequestException:
        return {}
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith("pypi_pulse_producer_") and " " in line:
            name, value = line.rsplit(" ", 1)
            out[name.split("{")[0]] = out.get(name.split("{")[0], 0.0) + float(value)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=66_000)
    ap.add_argument("--warmup", type=float, default=10, help="seconds before the broker is starved")
    ap.add_argument("--stall", type=float, default=40, help="seconds the broker is starved")
    ap.add_argument("--after", type=float, default=30, help="seconds measured once it runs again")
    ap.add_argument("--duty", type=float, default=0.0, help="share of each second the starved broker runs (0: none)")
    ap.add_argument("--pending-bytes", help="PYPI_PULSE_PRODUCER_MAX_PENDING_BYTES (default: the setting's)")
    a = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="producer-memory-"))
    broker = EmbeddedBroker(port=free_port(), log_path=tmp / "broker.log").start()
    assert broker.proc is not None
    ensure_topics(broker.bootstrap, {"pypi-downloads": 4, "pypi-downloads-dlq": 1})
    mport = free_port()
    env = {**os.environ, "PYPI_PULSE_LOG_FORMAT": "json"}
    if a.pending_bytes:
        env["PYPI_PULSE_PRODUCER_MAX_PENDING_BYTES"] = a.pending_bytes
    cmd = command_lines.produce(broker.bootstrap, "pypi-downloads", tmp / "producer", "--rate", str(a.rate))
    cmd += ["--pack-events", "1000", "--metrics-port", str(mport), "--no-progress"]
    producer = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(tmp / "producer.log", "wb"), env=env)
    peaks = {"before": 0.0, "starved": 0.0, "after": 0.0}
    held_peak = 0.0
    t0 = time.monotonic()
    running = True
    print(f"{os.uname().nodename}, load average {os.getloadavg()[0]:.2f}, rate {a.rate:,.0f} events/s", flush=True)
    try:
        next_line = 0.0
        while producer.poll() is None:
            el = time.monotonic() - t0
            if el >= a.warmup + a.stall + a.after:
                break
            phase = "before" if el < a.warmup else "starved" if el < a.warmup + a.stall else "after"
            run = phase != "starved" or (el % 1.0) < a.duty
            if run != running:
                os.kill(broker.proc.pid, signal.SIGCONT if run else signal.SIGSTOP)
                running = run
            r = rss_mib(producer.pid)
            peaks[phase] = max(peaks[phase], r)
            if el >= next_line:
                next_line += 1.0
                m = scrape(mport)
                read = m.get("pypi_pulse_producer_events_read_total", 0)
                sent = m.get("pypi_pulse_producer_events_sent_total", 0)
                held = m.get("pypi_pulse_producer_pending_bytes", 0) / 2**20
                held_peak = max(held_peak, held)
                print(
                    f"{el:6.1f} s {phase:8s} RSS {r:7.0f} MiB  read {read:11,.0f}  acknowledged {sent:11,.0f}  "
                    f"pending {held:7.1f} MiB  broker RSS {rss_mib(broker.proc.pid):5.0f} MiB",
                    flush=True,
                )
            time.sleep(0.05)
    finally:
        if not running:
            os.kill(broker.proc.pid, signal.SIGCONT)
        C.stop_process(producer, signal.SIGINT, 30)
        broker.stop()
    print(
        "peak producer RSS (MiB): "
        + ", ".join(f"{k} {v:.0f}" for k, v in peaks.items())
        + f"; peak pending {held_peak:.1f} MiB; load average {os.getloadavg()[0]:.2f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
