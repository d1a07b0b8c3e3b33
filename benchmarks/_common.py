"""Shared by the benchmark scripts: the machine report, cached synthetic exports, an independent reference count,
the embedded broker, the dataflow in a child process, and RSS sampling.

The reference count (`reference`) deliberately re-implements the counting rules in the plainest Python, reading
each event with orjson, so that a benchmark's exactness check does not trust the code it measures.

Run `python3 benchmarks/_common.py run-flow CONFIG_JSON` is how the scripts start the dataflow in its own process
(so its RSS and CPU are its own); it prints one JSON line with the seconds `run_dataflow` took.
"""

from __future__ import annotations

import calendar
import json
import math
import os
import platform
import random
import re
import sqlite3
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from datetime import datetime
from pathlib import Path
from statistics import median
from typing import Optional

import orjson

HERE = Path(__file__).resolve().parent
DEFAULT_CACHE = Path(os.environ.get("PYPI_PULSE_BENCH_CACHE", Path.home() / ".cache" / "pypi-pulse-bench"))
T0 = 1795219200  # 2026-11-21T00:00:00Z: event time of generated exports
MIRRORS = {"bandersnatch", "z3c.pypimirror", "Artifactory", "devpi"}


# ---- machine ---------------------------------------------------------------------------------------------------
def machine() -> dict:
    from importlib.metadata import version

    import bytewax  # noqa: F401
    import confluent_kafka
    import msgspec

    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "os": platform.platform(),
        "bytewax": version("bytewax"),
        "confluent_kafka": version("confluent-kafka"),
        "librdkafka": confluent_kafka.libversion()[0],
        "msgspec": msgspec.__version__,
        "orjson": orjson.__version__,
        "sqlite": sqlite3.sqlite_version,
        "load_avg_1m_at_start": load,
    }


def print_machine() -> dict:
    m = machine()
    print("machine: " + ", ".join(f"{k}={v}" for k, v in m.items()), flush=True)
    return m


def stats_line(name: str, values: list[float], unit: str) -> str:
    vals = ", ".join(f"{v:,.0f}" for v in values)
    return f"{name}: median {median(values):,.0f} {unit} (runs: {vals})"


# ---- data ------------------------------------------------------------------------------------------------------
def synthetic_export(n: int, rate: float, seed: int, cache_dir: Path = DEFAULT_CACHE, shuffle: bool = False) -> Path:
    """An NDJSON export of `n` synthetic events at `rate` events per second of event time, generated once.
    `shuffle`: lines in a seeded random order, as a BigQuery extract comes (its rows are in no time order)."""
    from pypi_pulse.producer.synthetic import TAIL_SHARE, SyntheticSource

    cache_dir.mkdir(parents=True, exist_ok=True)
    tail = f"-tail{round(TAIL_SHARE * 100)}"  # an export made with another long tail is another export
    path = cache_dir / f"synthetic-{n}-r{int(rate)}-s{seed}{tail}{'-shuffled' if shuffle else ''}.ndjson"
    if path.exists():
        return path
    t = time.perf_counter()
    src = SyntheticSource(seed)
    tmp = path.with_suffix(".partial")
    written, sec, lines = 0, T0, []
    with open(tmp, "wb") as f:
        while written < n:
            pairs = src.encoded(src.timestamps(sec, sec + 1, rate))[: n - written]
            if shuffle:
                lines += (v for v, _ in pairs)
            else:
                f.write(b"".join(v + b"\n" for v, _ in pairs))
            written += len(pairs)
            sec += 1
        if shuffle:
            random.Random(seed).shuffle(lines)
            f.write(b"".join(v + b"\n" for v in lines))
    tmp.rename(path)
    print(f"generated {n:,} events ({sec - T0} s of event time) in {time.perf_counter() - t:.1f} s: {path}", flush=True)
    return path


def _second(ts) -> int:
    if isinstance(ts, (int, float)):
        return int(ts)
    return calendar.timegm(datetime.strptime(ts[:19].replace("T", " "), "%Y-%m-%d %H:%M:%S").timetuple())


def _minor(py: Optional[str]) -> Optional[str]:
    m = re.match(r"(\d+)\.(\d+)", py or "")
    return f"{m.group(1)}.{m.group(2)}" if m else None


def reference(path: Path) -> dict:
    """Windows and every daily rollup row, counted one event at a time from the export (cached beside it)."""
    cached = path.with_suffix(".expected.json")
    if cached.exists() and cached.stat().st_mtime >= path.stat().st_mtime:
        return orjson.loads(cached.read_bytes())
    from pypi_pulse.countries import ALPHA2

    t = time.perf_counter()
    countries: dict = defaultdict(Counter)
    projects: dict = defaultdict(Counter)
    daily: Counter = Counter()
    n = 0
    with open(path, "rb") as f:
        for line in f:
            e = orjson.loads(line)
            n += 1
            sec = _second(e["timestamp"])
            cc = e.get("country_code")
            cc = cc if cc in ALPHA2 else "ZZ"
            project = re.sub(r"[-_.]+", "-", e.get("project") or e["file"]["project"]).lower()
            countries[sec][cc] += 1
            projects[sec][project] += 1
            day = datetime.utcfromtimestamp(sec).date().isoformat()
            daily[(day, project, "with_mirrors", "")] += 1
            d = e.get("details") or {}
            installer = (d.get("installer") or {}).get("name")
            if installer in MIRRORS:
                continue
            fl = e.get("file") or {}
            system = (d.get("system") or {}).get("name")
            minor = _minor(d.get("python"))
            for dim, cat in (
                ("overall", None),
                ("country", cc),
                ("installer", installer),
                ("python_minor", minor),
                ("python_major", minor.split(".")[0] if minor else None),
                ("system", system if system in (None, "Darwin", "Linux", "Windows") else "other"),
                ("cpu", d.get("cpu")),
                ("file_type", fl.get("type")),
                ("version", fl.get("version")),
                ("ci", "true" if d.get("ci") else None),
            ):
                daily[(day, project, dim, "" if cat is None else cat)] += 1
    windows = {}
    for sec, cs in countries.items():
        ps = projects[sec]
        top = sorted(ps.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        windows[str(sec)] = {
            "downloads": sum(cs.values()),
            "countries": dict(cs),
            "unique_packages": len(ps),
            "top": [list(x) for x in top],
        }
    out = {"events": n, "windows": windows, "daily": [[*k, v] for k, v in daily.items()]}
    cached.write_bytes(orjson.dumps(out))
    print(f"reference counts of {n:,} events computed in {time.perf_counter() - t:.1f} s", flush=True)
    return out


def check_sink(sink_path: Path, expected: dict) -> list[str]:
    """Every difference between the sink and the reference (empty: exact)."""
    from pypi_pulse.sink.history import History
    from pypi_pulse.sink.history_reader import HistoryReader

    problems = []
    db = sqlite3.connect(f"file:{sink_path}?mode=ro", uri=True)
    history = HistoryReader(History(Path(sink_path).parent / "history"))  # beside the sink, as on the defaults
    try:
        got = {
            str(s): {"downloads": d, "countries": orjson.loads(c), "unique_packages": u, "top": orjson.loads(t)}
            for s, d, u, c, t in db.execute("SELECT start, downloads, unique_packages, countries, top FROM windows")
        }
        want = expected["windows"]
        if got.keys() != want.keys():
            problems.append(
                f"windows: {len(got)} stored, {len(want)} expected; missing {sorted(want.keys() - got.keys())[:5]}, "
                f"extra {sorted(got.keys() - want.keys())[:5]}"
            )
        bad = [s for s in want if s in got and got[s] != want[s]]
        if bad:
            problems.append(f"{len(bad)} windows differ, e.g. {bad[0]}: stored {got[bad[0]]} expected {want[bad[0]]}")
        daily = {
            (d, p, dim, c): n
            for d, p, dim, c, n in history.query("SELECT day, project, dimension, category, downloads FROM daily")
        }
        want_daily = {tuple(r[:4]): r[4] for r in expected["daily"]}
        diff = [k for k in want_daily.keys() | daily.keys() if daily.get(k) != want_daily.get(k)]
        if diff:
            k = sorted(diff)[0]
            problems.append(
                f"{len(diff)} daily rows differ, e.g. {k}: stored {daily.get(k)} expected {want_daily.get(k)}"
            )
        totals = Counter()
        for (d, _, dim, c), n in want_daily.items():
            totals[(d, dim, c)] += n
        got_totals = {
            (d, dim, c): n
            for d, dim, c, n in history.query("SELECT day, dimension, category, downloads FROM daily_totals")
        }
        tdiff = [k for k in totals.keys() | got_totals.keys() if got_totals.get(k) != totals.get(k)]
        if tdiff:
            problems.append(f"{len(tdiff)} daily_totals rows differ, e.g. {tdiff[0]}")
        row = db.execute("SELECT counters FROM pipeline_stats WHERE id = 1").fetchone()
        c = orjson.loads(row[0]) if row else {}
        if c.get("counted") != expected["events"] or c.get("dropped", 0) or c.get("dead_lettered", 0):
            problems.append(f"counters {c} (expected counted={expected['events']}, no drops, no dead letters)")
    finally:
        db.close()
        history.close()
    return problems


# ---- broker and processes --------------------------------------------------------------------------------------
def start_broker(log_dir: Path):
    from pypi_pulse.broker import EmbeddedBroker

    return EmbeddedBroker(port=0, log_path=log_dir / "broker.log").start()


def create_topic(bootstrap: str, topic: str, partitions: int = 4) -> None:
    from pypi_pulse.broker import ensure_topics

    ensure_topics(bootstrap, {topic: partitions, topic + "-dlq": 1})


def preload(bootstrap: str, topic: str, path: Path) -> tuple[dict[int, int], float]:
    """Publish an export through the real Publisher (keyed by project); acknowledged end offsets and seconds."""
    from pypi_pulse.producer.files import read_records
    from pypi_pulse.producer.publisher import Publisher

    t = time.perf_counter()
    pub = Publisher(bootstrap, topic, topic + "-dlq")
    for i, rec in enumerate(read_records(path)):
        pub.send(rec.value, rec.key)
        if i % 5000 == 0:
            pub.poll()
    pub.flush(300)
    return dict(pub.end_offsets), time.perf_counter() - t


class RssSampler:
    """Peak and time series of the resident set size of named processes, and the CPU time each has used: on two
    cores the broker, the producer and the dataflow share the machine, and where the CPU went explains a latency
    result (the embedded broker's share grows with what it holds)."""

    def __init__(self, every_s: float = 0.2):
        import psutil

        self.psutil = psutil
        self.every_s = every_s
        self.procs: dict[str, object] = {}
        self.trees: set[str] = set()  # names whose child processes are summed with them
        self.peak: dict[str, int] = defaultdict(int)
        self.series: dict[str, list[tuple[float, int]]] = defaultdict(list)
        self.cpu: dict[str, list[tuple[float, float]]] = defaultdict(list)  # (time, CPU seconds used so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self.started = time.monotonic()
        self.started_wall = time.time()  # series times + this = wall clock (block periods are wall-clock aligned)

    def watch(self, name: str, pid: int, tree: bool = False) -> None:
        """Sample process `pid` as `name`; with `tree`, the sum of it and its descendants (a local cluster's
        members, a helper process), so that "the dataflow's RSS" is all of its memory."""
        self.procs[name] = self.psutil.Process(pid)
        if tree:
            self.trees.add(name)

    def start(self) -> RssSampler:
        self._thread.start()
        return self

    def sample(self) -> None:
        now = time.monotonic() - self.started
        for name, p in list(self.procs.items()):
            try:
                times = p.cpu_times()
                rss, cpu = p.memory_info().rss, times.user + times.system
                for child in p.children(recursive=True) if name in self.trees else []:
                    try:
                        times = child.cpu_times()
                        rss, cpu = rss + child.memory_info().rss, cpu + times.user + times.system
                    except self.psutil.Error:  # it ended between the listing and the reading
                        pass
            except self.psutil.Error:
                continue
            self.peak[name] = max(self.peak[name], rss)
            self.series[name].append((now, rss))
            self.cpu[name].append((now, cpu))

    def cores(self, since_wall: float = 0.0, until_wall: float = math.inf) -> dict[str, float]:
        """Cores each process used on average between two wall-clock times (the samples closest inside them)."""
        out = {}
        for name, series in self.cpu.items():
            inside = [(t, c) for t, c in series if since_wall <= self.started_wall + t <= until_wall]
            if len(inside) >= 2 and inside[-1][0] > inside[0][0]:
                out[name] = (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])
        return out

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.sample()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


def mib(n: int) -> str:
    return f"{n / 2**20:,.0f} MiB"


def spawn_flow(config: dict, stderr=None) -> subprocess.Popen:
    """The real dataflow (`run_dataflow`) in a child process; see `run_flow_child`."""
    return subprocess.Popen(
        [sys.executable, str(HERE / "_common.py"), "run-flow", json.dumps(config)],
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
    )


def finish_flow(proc: subprocess.Popen, timeout: float) -> dict:
    out, _ = proc.communicate(timeout=timeout)
    if proc.returncode != 0:
        raise SystemExit(f"dataflow child failed with exit code {proc.returncode}")
    return json.loads(out.strip().splitlines()[-1])


def run_flow_child(config: dict) -> None:
    from pypi_pulse import logs
    from pypi_pulse.dataflow.flow import FlowConfig
    from pypi_pulse.dataflow.runner import run_dataflow

    logs.setup(config.get("log_level", "WARNING"), "console")
    end = {int(k): v for k, v in config["end_offsets"].items()} if config.get("end_offsets") else None
    cfg = FlowConfig(
        config["bootstrap"],
        config["topic"],
        config["topic"] + "-dlq",
        config["partitions"],
        config["sink_url"],
        lateness_s=config.get("lateness_s", 600.0),
        batch_size=config.get("batch_size", 20_000),
    )
    t, started_at = time.perf_counter(), time.time()
    try:
        run_dataflow(
            cfg,
            workers=config.get("workers", 1),
            epoch_s=config.get("epoch_s", 10.0),
            stop_offsets=(lambda: end) if end is not None else None,
            recovery_dir=Path(config["recovery_dir"]) if config.get("recovery_dir") else None,
        )
    except (KeyboardInterrupt, Exception) as exc:
        if end is not None or "signal received" not in str(exc) and not isinstance(exc, KeyboardInterrupt):
            raise
        return  # a live run is stopped with SIGINT
    print(json.dumps({"seconds": time.perf_counter() - t, "started_at": started_at}), flush=True)


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "run-flow":
        run_flow_child(json.loads(sys.argv[2]))
    else:
        raise SystemExit("usage: _common.py run-flow CONFIG_JSON (used by the benchmark scripts)")


def percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    i = min(len(sorted_values) - 1, max(0, round(q * (len(sorted_values) - 1))))
    return sorted_values[i]


def stop_process(proc: subprocess.Popen, sig: int, grace_s: float) -> None:
    """Ask a child to stop with `sig`, as a user's Ctrl-C or a supervisor would; killed after `grace_s`."""
    if proc.poll() is not None:
        return
    proc.send_signal(sig)
    try:
        proc.wait(grace_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
