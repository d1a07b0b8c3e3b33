"""Benchmark 4: dashboard callback and API endpoint latency on a full-size sink, alone and under 50
concurrent Live-tab viewers.

    python benchmarks/dashboard_latency.py                  # build (or reuse) the sink, then measure
    python benchmarks/dashboard_latency.py --days 30 --packages 3000 --hours 6   # a quicker, smaller run

The sink holds `--hours` of per-second windows (48 h by default: 172,800 windows with ~40 countries and a top 10
each) and its history `--days` of daily rollups for `--packages` packages (180 days x 15,000 by default) with the
real popularity of the top-15,000 list: popular packages get full breakdowns (countries, Python versions, systems,
installers, CPUs, file types, versions, CI), the long tail only a few categories, as in the real data. Windows are
written through `Sink.write`; each day of rollups is one `Sink.backfill_day`, the day file a backfill or a
compaction writes (sink/history.py), and the sink then summarises the complete days as it does in service. The sink
and its history are kept (see --db) and reused.

The server is the real `pypi-pulse serve` in a child process; clients are HTTP sessions here, signed in like a
browser (Dash callbacks are POSTed exactly as the page does, built from /_dash-dependencies). History requests use
fresh arguments each time so that they miss the server's cache; Live requests share the once-per-second cache,
as real viewers do. On this 2-core machine the client threads compete with the server for the CPU.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import random
import re
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from importlib import resources
from pathlib import Path

import pyarrow.parquet as pq
import requests

from pypi_pulse import command_lines
from pypi_pulse.broker import free_port
from pypi_pulse.sink.base import Sink, open_sink
from pypi_pulse.sink.model import WindowRow
from pypi_pulse.sink.summaries import summarize

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

END = int(dt.datetime(2026, 11, 20, 0, 0, tzinfo=dt.UTC).timestamp())
USER, PASSWORD = "bench", "benchmark-password"
CATEGORIES = ["NLP", "deep learning", "web", "cloud", "machine learning"]


# ---- building the sink ---------------------------------------------------------------------------------------------
def top_packages(n: int) -> list[tuple[str, int]]:
    text = resources.files("pypi_pulse").joinpath("data/top-pypi-packages-30d.csv").read_text()
    rows = [(r["project"], int(r["download_count"])) for r in csv.DictReader(text.splitlines())]
    return rows[:n]


def country_shares() -> list[tuple[str, float]]:
    text = resources.files("pypi_pulse").joinpath("data/country-share-2026-08.csv").read_text()
    rows = list(csv.reader(text.splitlines()))
    head, body = rows[0], rows[1:]
    shares = [(r[0], float(r[1])) for r in body if len(r) >= 2 and r[0] and r[1].replace(".", "", 1).isdigit()]
    if not shares:
        raise SystemExit(f"unexpected country-share header {head}")
    total = sum(s for _, s in shares)
    more = "IN BR CA AU NL KR SG ES IT PL SE CH IL TW RU MX ID VN TR UA AR BE AT DK FI NO CZ PT IE NZ".split()
    rest = [c for c in more if c not in dict(shares)]
    left = max(0.0, (1 - total) if total <= 1 else (100 - total) / 100)
    scale = 1 if total <= 1 else 0.01
    return [(c, s * scale) for c, s in shares] + [(c, left / len(rest)) for c in rest]


def build_windows(sink: Sink, hours: float, rng: random.Random, packages: list[tuple[str, int]]) -> None:
    countries = country_shares()
    names = [p for p, _ in packages[:200]]
    n = int(hours * 3600)
    batch = []
    for i in range(n):
        start = END - n + i
        total = 60_000 + rng.randint(-6000, 6000)
        cs = {c: max(1, int(total * s * rng.uniform(0.8, 1.2))) for c, s in countries}
        tot = sum(cs.values())
        top = sorted(
            ((p, int(tot * 0.014 / (k + 1) * rng.uniform(0.8, 1.2))) for k, p in enumerate(names[:12])),
            key=lambda t: (-t[1], t[0]),
        )[:10]
        batch.append(WindowRow(start, tot, 9000 + rng.randint(0, 2000), cs, top))
        if len(batch) == 10_000:
            sink.write(batch, None)
            batch = []
    if batch:
        sink.write(batch, None)


BREAKDOWN = {
    "python_minor": [("3.12", 0.3), ("3.11", 0.25), ("3.10", 0.18), ("3.13", 0.12), ("3.9", 0.1), (None, 0.05)],
    "system": [("Linux", 0.85), ("Windows", 0.08), ("Darwin", 0.06), (None, 0.01)],
    "installer": [("pip", 0.7), ("uv", 0.2), ("poetry", 0.05), ("requests", 0.05)],
    "cpu": [("x86_64", 0.8), ("aarch64", 0.15), ("AMD64", 0.05)],
    "file_type": [("bdist_wheel", 0.95), ("sdist", 0.05)],
    "version": [("2.0.0", 0.5), ("1.9.0", 0.3), ("1.8.0", 0.2)],
    "ci": [("true", 0.25), (None, 0.75)],
}


def build_rollups(sink: Sink, days: int, packages: list[tuple[str, int]], rng: random.Random) -> int:
    """Each day as its day file: full breakdowns for the top 1,000 packages, a few categories for the rest."""
    countries = country_shares()
    first = dt.date.fromtimestamp(END - days * 86400)
    rows_written = 0
    templates = []  # per package: [(dimension, category, share of the package's downloads)]
    for rank, (p, monthly) in enumerate(packages):
        full = rank < 1000
        t = [("overall", None, 1.0), ("with_mirrors", None, 1.03), ("python_major", "3", 1.0)]
        t += [("country", cc, share) for cc, share in (countries if full else countries[:3])]
        for dim, split in BREAKDOWN.items():
            t += [(dim, cat, share) for cat, share in (split if full else split[:1])]
        templates.append((p, monthly / 30, t))
    for d in range(days):
        day = (first + dt.timedelta(days=d)).isoformat()
        rows = []
        for p, daily_mean, t in templates:
            n = daily_mean * rng.uniform(0.85, 1.15)
            rows.extend((p, dim, cat, max(1, int(n * share))) for dim, cat, share in t)
        rows_written += sink.backfill_day(day, rows, "benchmark")
        if d % 20 == 0:
            print(f"  rollups: day {d + 1}/{days}, {rows_written:,} rows", file=sys.stderr, flush=True)
    return rows_written


def build(sink: Sink, hours: float, days: int, n_packages: int) -> None:
    rng = random.Random(4)
    packages = top_packages(n_packages)
    t = time.perf_counter()
    build_windows(sink, hours, rng, packages)
    print(f"  windows: {int(hours * 3600):,} in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    t = time.perf_counter()
    n = build_rollups(sink, days, packages, rng)
    print(f"  rollups: {n:,} rows in {time.perf_counter() - t:.0f} s", file=sys.stderr)


# ---- measuring ---------------------------------------------------------------------------------------------------
class Client:
    """A signed-in browser-like session that can fire any Dash callback by its output."""

    def __init__(self, base: str):
        self.base = base
        self.http = requests.Session()
        token = re.search(r'name="csrf_token" value="([^"]+)"', self.http.get(base + "/login").text).group(1)
        r = self.http.post(
            base + "/login", data={"username": USER, "password": PASSWORD, "csrf_token": token}, allow_redirects=False
        )
        assert r.status_code == 302, f"sign-in failed: {r.status_code}"
        self.deps = {d["output"]: d for d in self.http.get(base + "/_dash-dependencies").json()}
        self.server_s: list[float] = []  # time spent in the server app (its Server-Timing header), per callback

    def callback(self, output_contains: str, values: dict) -> float:
        dep = next(d for o, d in self.deps.items() if output_contains in o)

        def props(items):
            return [
                {"id": i["id"], "property": i["property"], "value": values.get(f"{i['id']}.{i['property']}")}
                for i in items
            ]

        outs = [o for o in dep["output"].strip(".").split("...")]
        outputs = [{"id": o.rsplit(".", 1)[0], "property": o.rsplit(".", 1)[1]} for o in outs]
        body = {
            "output": dep["output"],
            "outputs": outputs if len(outputs) > 1 else outputs[0],
            "inputs": props(dep["inputs"]),
            "state": props(dep["state"]),
            "changedPropIds": [f"{i['id']}.{i['property']}" for i in dep["inputs"][:1]],
        }
        t = time.perf_counter()
        r = self.http.post(self.base + "/_dash-update-component", json=body)
        elapsed = time.perf_counter() - t
        assert r.status_code in (200, 204), (output_contains, r.status_code, r.text[:300])
        self.server_s.append(float(r.headers["Server-Timing"].split("dur=")[1]) / 1000)
        return elapsed

    def get(self, path: str, **kw) -> float:
        t = time.perf_counter()
        r = self.http.get(self.base + path, **kw)
        elapsed = time.perf_counter() - t
        assert r.status_code == 200, (path, r.status_code, r.text[:300])
        return elapsed


def summary(samples: list[float], server: list[float] = ()) -> str:
    if not samples:
        return "no samples"
    ms = sorted(s * 1000 for s in samples)
    extra = f"   server-side median {statistics.median(server) * 1000:.1f} ms" if server else ""
    p95 = ms[min(len(ms) - 1, int(round(0.95 * (len(ms) - 1))))]
    return f"p50 {statistics.median(ms):7.1f} ms   p95 {p95:7.1f} ms   (n={len(ms)}){extra}"


def measure(base: str, days: int, packages: list[str]) -> None:
    c = Client(base)
    rng = random.Random(9)
    last = dt.date.fromtimestamp(END - 86400)
    first = last - dt.timedelta(days=days - 1)

    def period():
        span = rng.randint(7, min(90, days))
        end = last - dt.timedelta(days=rng.randint(0, max(0, days - span - 1)))
        return (end - dt.timedelta(days=span - 1)).isoformat(), end.isoformat()

    print("\nLive tab callback (one viewer, ~4 requests/s; the first request of each second refreshes the feed)")
    live = []
    c.server_s.clear()
    deadline = time.monotonic() + 15
    k = 0
    while time.monotonic() < deadline:
        live.append(
            c.callback(
                "live-treemap.figure",
                {
                    "live-tick.n_intervals": k,
                    "live-range.value": [300, 900, 3600][k % 3],
                    "live-countries.value": ["DE"] if k % 2 else [],
                    "theme.data": "light",
                },
            )
        )
        k += 1
        time.sleep(0.25)  # pacing of a simulated viewer, not waiting for a condition
    print(f"  live (counters, 2 maps, rate chart, treemap)  {summary(live, c.server_s)}")

    print("\nHistory callbacks (fresh arguments each time, so every request misses the 30 s cache)")
    hist: dict[str, list[float]] = {
        k: []
        for k in (
            "countries map",
            "country top 5",
            "scatter 2 packages",
            "daily + moving averages",
            "breakdown by metric",
            "package search",
            "category shares by day",
            "category mix of a country",
            "top of a category",
            "hour and weekday profile",
        )
    }
    metrics = ["python_minor", "system", "installer", "country", "cpu", "file_type", "version", "ci"]
    countries = ["US", "DE", "GB", "FR", "JP", "IN", "CN", "CA", "BR", "NL"]
    hist_server: dict[str, list[float]] = {k: [] for k in hist}

    def timed(kind: str, output: str, values: dict) -> None:
        hist[kind].append(c.callback(output, values))
        hist_server[kind].append(c.server_s[-1])

    for i in range(20):
        s, e = period()
        pk = rng.sample(packages[:3000], 3)
        timed(
            "countries map",
            "countries-map.figure",
            {
                "countries-dates.start_date": s,
                "countries-dates.end_date": e,
                "countries-package.value": pk[0] if i % 2 else None,
                "theme.data": "light",
            },
        )
        timed(
            "country top 5",
            "countries-top5.figure",
            {
                "countries-country.value": countries[i % len(countries)],
                "countries-dates.start_date": s,
                "countries-dates.end_date": e,
                "theme.data": "light",
            },
        )
        timed(
            "scatter 2 packages",
            "countries-scatter.figure",
            {
                "scatter-a.value": pk[0],
                "scatter-b.value": pk[1],
                "countries-dates.start_date": s,
                "countries-dates.end_date": e,
                "theme.data": "light",
            },
        )
        timed(
            "daily + moving averages",
            "trends-daily.figure",
            {"trends-packages.value": pk[:2], "trends-ma.value": [10, 20, 30], "theme.data": "light"},
        )
        timed(
            "breakdown by metric",
            "trends-breakdown.figure",
            {"trends-packages.value": [pk[2]], "trends-metric.value": metrics[i % len(metrics)], "theme.data": "light"},
        )
        timed(
            "package search",
            "trends-packages.options",
            {"trends-packages.search_value": pk[2][: 3 + i % 3], "trends-packages.value": []},
        )
        timed(
            "category shares by day",
            "categories-share.figure",
            {"categories-dates.start_date": s, "categories-dates.end_date": e, "theme.data": "light"},
        )
        timed(
            "category mix of a country",
            "categories-country-mix.figure",
            {
                "categories-country.value": countries[i % len(countries)],
                "categories-dates.start_date": s,
                "categories-dates.end_date": e,
                "theme.data": "light",
            },
        )
        timed(
            "top of a category",
            "categories-top.figure",
            {
                "categories-category.value": CATEGORIES[i % len(CATEGORIES)],
                "categories-dates.start_date": s,
                "categories-dates.end_date": e,
                "theme.data": "light",
            },
        )
        timed(
            "hour and weekday profile",
            "daily-weekdays.figure",
            {"daily-weeks.value": [1, 4, 8, 13, 26][i % 5], "theme.data": ["light", "dark"][i // 5 % 2]},
        )
    # the longest periods: the whole history, for the country with most downloads (US) and a few others
    hist["country top 5, whole history"] = []
    hist_server["country top 5, whole history"] = []
    for i in range(20):
        timed(
            "country top 5, whole history",
            "countries-top5.figure",
            {
                "countries-country.value": ["US", "US", "DE", "IN"][i % 4],
                "countries-dates.start_date": first.isoformat(),
                "countries-dates.end_date": (last - dt.timedelta(days=i // 4)).isoformat(),
                "theme.data": "light",
            },
        )
    t0 = c.callback("trends-categories.figure", {"theme.data": "dark"})
    t_heat = [c.callback("daily-heatmap.figure", {"theme.data": theme}) for theme in ("dark", "light")]
    for name, samples in hist.items():
        print(f"  {name:<28} {summary(samples, hist_server[name])}")
    print(f"  {'categories view (once)':<28} {t0 * 1000:7.1f} ms")
    print(
        f"  {'country x hour heatmap':<28} {t_heat[0] * 1000:7.1f} ms first (sums 24 h of windows), "
        f"{t_heat[1] * 1000:.1f} ms next (30 s cache)"
    )

    print("\nEndpoints")
    token = subprocess.run(
        command_lines.cli("users", "token", USER, "--data-dir", str(DATA_DIR)),
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    api = requests.Session()
    api.headers["Authorization"] = f"Bearer {token}"
    ep: dict[str, list[float]] = {
        "GET / (page)": [],
        "GET /_dash-layout": [],
        "GET /api/packages/P/recent": [],
        "GET /api/packages/P/overall": [],
        "GET /api/packages/P/python_minor": [],
    }
    for _ in range(20):
        p = rng.choice(packages[:3000])
        ep["GET / (page)"].append(c.get("/"))
        ep["GET /_dash-layout"].append(c.get("/_dash-layout"))
        for kind in ("recent", "overall", "python_minor"):
            t = time.perf_counter()
            r = api.get(f"{base}/api/packages/{p}/{kind}")
            if r.status_code == 404:
                continue
            assert r.status_code == 200, (kind, r.status_code, r.text[:200])
            ep[f"GET /api/packages/P/{kind}"].append(time.perf_counter() - t)
    for name, samples in ep.items():
        if samples:
            print(f"  {name:<28} {summary(samples)}")

    print("\n50 concurrent Live-tab viewers (each refreshes once a second, like dcc.Interval), 20 s")
    lat: list[float] = []
    errors = []
    clients = [Client(base) for _ in range(50)]
    stop = time.monotonic() + 20

    def viewer(cl: Client, offset: float):
        time.sleep(offset)  # spread the viewers over the second, as real page loads are
        n = 0
        while time.monotonic() < stop:
            t = time.monotonic()
            try:
                lat.append(
                    cl.callback(
                        "live-treemap.figure",
                        {
                            "live-tick.n_intervals": n,
                            "live-range.value": 300,
                            "live-countries.value": [],
                            "theme.data": "light",
                        },
                    )
                )
            except Exception as exc:  # recorded and reported, not hidden
                errors.append(repr(exc))
            n += 1
            time.sleep(max(0.0, 1.0 - (time.monotonic() - t)))  # the viewer's 1 s refresh period

    threads = [threading.Thread(target=viewer, args=(cl, i / 50)) for i, cl in enumerate(clients)]
    t = time.monotonic()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    wall = time.monotonic() - t
    server = [x for cl in clients for x in cl.server_s]
    print(f"  live callback under load      {summary(lat, server)}")
    print(f"  {len(lat) / wall:.1f} refreshes/s served (ideal 50), errors: {len(errors)}")
    if errors:
        print(f"  first error: {errors[0][:300]}")


DATA_DIR: Path


def main() -> None:
    global DATA_DIR
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--hours", type=float, default=48)
    ap.add_argument("--days", type=int, default=180)
    ap.add_argument("--packages", type=int, default=15_000)
    ap.add_argument("--db", type=Path, default=None, help="sink file to build or reuse (default: in the temp dir)")
    a = ap.parse_args()
    db = a.db or Path(tempfile.gettempdir()) / f"pypi-pulse-bench-dash-{a.hours:g}h-{a.days}d-{a.packages}p.db"
    history = db.with_suffix(".history")  # the sink's rollup history (Parquet files), kept beside the sink file
    C.print_machine()
    print(f"sink: {db}, history {history} ({a.hours:g} h of windows, {a.days} days x {a.packages:,} packages)")
    if not db.exists():
        print("building the sink (kept for later runs)...", file=sys.stderr)
        tmp, tmp_history = db.with_suffix(".building"), db.with_suffix(".history-building")
        for f in (tmp, Path(str(tmp) + "-wal"), Path(str(tmp) + "-shm")):
            f.unlink(missing_ok=True)
        shutil.rmtree(tmp_history, ignore_errors=True)
        with open_sink(f"sqlite:///{tmp}", history=tmp_history) as sink:
            build(sink, a.hours, a.days, a.packages)
        sqlite3.connect(tmp).execute("PRAGMA wal_checkpoint(TRUNCATE)").connection.close()
        shutil.rmtree(history, ignore_errors=True)
        tmp_history.rename(history)
        tmp.rename(db)  # last: the sink file's presence says that both are whole
    with open_sink(f"sqlite:///{db}", history=history) as sink:  # the sink's upkeep: summaries of complete days
        t = time.perf_counter()
        n = summarize(sink)
        if n:
            print(f"summarised {n} complete days in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    files = list(history.rglob("*.parquet"))
    n_daily = sum(pq.read_metadata(f).num_rows for f in files)
    print(
        f"sink size {db.stat().st_size / 2**30:.2f} GiB; history {sum(f.stat().st_size for f in files) / 2**30:.2f} "
        f"GiB in {len(files)} day files, {n_daily:,} daily rows"
    )

    with tempfile.TemporaryDirectory(prefix="pypi-pulse-bench-") as d:
        DATA_DIR = Path(d)
        from pypi_pulse.dashboard.users import UserStore

        UserStore(DATA_DIR).add(USER, PASSWORD)
        port = free_port()
        proc = subprocess.Popen(
            command_lines.serve(port, f"sqlite:///{db}", d, "--history", str(history)),
            stderr=open(Path(d) / "serve.log", "w"),
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 60
            while True:
                try:
                    requests.get(base + "/login", timeout=2)
                    break
                except requests.ConnectionError:
                    if proc.poll() is not None or time.monotonic() > deadline:
                        raise SystemExit(f"server did not start: {(Path(d) / 'serve.log').read_text()}") from None
                    time.sleep(0.1)  # polling interval while the server starts
            measure(base, a.days, [p for p, _ in top_packages(a.packages)])
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)


if __name__ == "__main__":
    main()
