"""Bytes a rollup row takes in the Parquet history, and the history's size for a year at PyPI's real volume.

    python3 benchmarks/history_storage.py                       # 250,000, 500,000 and 1,000,000 events
    python3 benchmarks/history_storage.py --events 100000,200000 # quicker

Measured, for each size: a synthetic export of one day's events with PyPI's real shape (the top-15,000 projects'
popularity, the 23% long tail, real country, Python, installer and system mixes) goes through the real pipeline,
`pypi-pulse run --source file:EXPORT --speed max --until-drained` with a fresh data directory, and the history is
checked against an independent count; the day's block files are then compacted into its day file (the dataflow's
own `History.compact`), once with the default folding of small projects' fine detail (rollup_detail_min_downloads
1000) and once keeping every row (0), and the day file's rows and bytes on disk are reported.

Scaled to PyPI's volume: a plain power law through the measured sizes would ignore that rows saturate (a project
has only so many countries, Pythons and versions), so rows a day at any volume come from a model of the same mixes:
the expected distinct (project, dimension, category) keys, sum of 1 - exp(-expected downloads), folded as
compaction folds. The model's error is printed beside each measurement, and the measured growth between sizes
(rows ~ events^k, k falling as volume grows); the year's bytes are the model's rows at the real volume times the
larger bytes per row measured at the largest size. The synthetic details are less varied than real ones, so
real rows may take more bytes: the output says up to how many bytes a row the year stays within 150 GB.
"""

from __future__ import annotations

import argparse
import math
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

from pypi_pulse import command_lines  # noqa: E402

DAYS_A_YEAR = 365


# ---- measured -------------------------------------------------------------------------------------------------
def run_pipeline(export: Path, work: Path) -> float:
    """The export through `pypi-pulse run` into work/run.db, its history beside it (work/history); seconds."""
    t = time.perf_counter()
    proc = subprocess.run(
        command_lines.replay(export, f"sqlite:///{work / 'run.db'}", work / "data", "--json"),
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise SystemExit(f"pypi-pulse run failed ({proc.returncode}): {proc.stderr[-2000:]}")
    return time.perf_counter() - t


def compacted(history: Path, day: str, min_daily_downloads: int, work: Path) -> dict:
    """A copy of the day's block files compacted into its day file: the file's rows and bytes on disk."""
    from pypi_pulse.sink.history import DAY_FILE, History

    root = work / f"compacted-{min_daily_downloads}"
    shutil.copytree(history / f"day={day}", root / f"day={day}")
    h = History(root)
    t = time.perf_counter()
    if not h.compact(day, min_daily_downloads):
        raise SystemExit(f"day {day} had no blocks to compact")
    seconds = time.perf_counter() - t
    path = Path(h.path(day, DAY_FILE))
    meta = pq.read_metadata(path)
    return {"rows": meta.num_rows, "bytes": path.stat().st_size, "seconds": seconds, "row_groups": meta.num_row_groups}


def measure(n: int, rate: float, detail_min: int, cache: Path) -> dict:
    from pypi_pulse.sink.history import History

    export = C.synthetic_export(n, rate, 1, cache)
    expected = C.reference(export)
    work = Path(tempfile.mkdtemp(prefix="bench-history-"))
    try:
        run_s = run_pipeline(export, work)
        problems = C.check_sink(work / "run.db", expected)
        if problems:
            raise SystemExit(f"{n:,} events: the history is WRONG: " + "; ".join(problems))
        days = History(work / "history").days()
        if len(days) != 1:
            raise SystemExit(f"expected one day of history, found {days}")
        blocks = sum(p.stat().st_size for p in (work / "history").rglob("block-*.parquet"))
        out = {"events": expected["events"], "day": days[0], "run_s": run_s, "block_bytes": blocks}
        out["folded"] = compacted(work / "history", days[0], detail_min, work)
        out["exact"] = compacted(work / "history", days[0], 0, work)
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)


# ---- model ----------------------------------------------------------------------------------------------------
def marginals() -> tuple[float, dict[str, np.ndarray]]:
    """The share of mirror downloads, and per dimension the probabilities of its categories for one non-mirror
    download, as the synthetic source draws them (producer/popularity.py)."""
    from pypi_pulse import rules
    from pypi_pulse.producer import popularity as pop

    def mix(w, key=lambda v: v) -> dict:
        acc: dict = {}
        prev = 0.0
        for v, cw in zip(w.values, w.cum_weights):
            acc[key(v)] = acc.get(key(v), 0.0) + cw - prev
            prev = cw
        total = sum(acc.values())
        return {k: v / total for k, v in acc.items()}

    installers = mix(pop.INSTALLERS, lambda v: None if v is None else v[0])
    mirrors = sum(v for k, v in installers.items() if rules.is_mirror(k))
    installers = {k: v / (1 - mirrors) for k, v in installers.items() if not rules.is_mirror(k)}
    no_agent = installers[None]  # no user agent: details is null, so every details dimension is null

    def with_null_details(d: dict) -> dict:
        out = {k: (1 - no_agent) * v for k, v in d.items()}
        out[None] = out.get(None, 0.0) + no_agent
        return out

    dims = {
        "installer": installers,
        "python_minor": with_null_details(mix(pop.PYTHONS, rules.python_minor)),
        "python_major": with_null_details(mix(pop.PYTHONS, rules.python_major)),
        "system": with_null_details(mix(pop.SYSTEMS, lambda v: rules.system_category(None if v is None else v[0]))),
        "cpu": with_null_details(mix(pop.CPUS)),
        "ci": with_null_details(mix(pop.CI, rules.ci_category)),
        "country": mix(pop.countries(), lambda v: "ZZ" if v is None else v),
        "file_type": mix(pop.FILE_TYPES),
        "version": {"newest": 0.6, "previous": 0.25, "older": 0.15},  # producer/synthetic._version_of
        "overall": {None: 1.0},
    }
    return mirrors, {k: np.array(list(v.values())) for k, v in dims.items()}


def project_shares() -> np.ndarray:
    """Each project's share of all downloads: the top 15,000 by their real 30-day counts, then the long tail."""
    from pypi_pulse.producer import popularity as pop

    cw = np.array(pop.packages().cum_weights, dtype=float)
    top = np.diff(np.concatenate([[0.0], cw])) / cw[-1] * (1 - pop.TAIL_SHARE)
    return np.concatenate([top, pop.tail_weights() * pop.TAIL_SHARE])


def _distinct(rates: np.ndarray, q: np.ndarray) -> float:
    """Expected distinct (project, category) pairs: projects at `rates` downloads, categories drawn with `q`."""
    return sum(float(np.sum(-np.expm1(-np.outer(chunk, q)))) for chunk in np.array_split(rates, 32) if chunk.size)


def model_rows(volume: float, shares: np.ndarray, mirrors: float, dims: dict, detail_min: float) -> float:
    """Expected rows of a day of `volume` downloads; projects under `detail_min` (with mirrors) keep one `other`
    row per folded dimension, as History.compact folds them."""
    from pypi_pulse.rules import FOLDED

    lam = volume * shares
    lam_nm = lam * (1 - mirrors)
    small = lam < detail_min if detail_min > 0 else np.zeros(lam.size, bool)
    rows = float(np.sum(-np.expm1(-lam)))  # with_mirrors
    others = float(np.sum(-np.expm1(-lam_nm[small])))  # one `other` row if the project had a non-mirror download
    for dim, q in dims.items():
        folded = dim in FOLDED
        rows += _distinct(lam_nm[~small] if folded else lam_nm, q) + (others if folded else 0.0)
    return rows


# ---- report ---------------------------------------------------------------------------------------------------
def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--events", default="250000,500000,1000000", help="export sizes to measure, comma-separated")
    ap.add_argument("--rate", type=float, default=400, help="events per second of event time in the exports")
    ap.add_argument("--detail-min", type=int, default=1000, help="rollup_detail_min_downloads (the default: 1000)")
    ap.add_argument("--volume", type=float, default=5.7e9, help="PyPI's downloads a day to estimate the year at")
    ap.add_argument("--cache-dir", type=Path, default=C.DEFAULT_CACHE)
    args = ap.parse_args()
    C.print_machine()
    sizes = sorted(int(s) for s in args.events.split(","))
    mirrors, dims = marginals()
    shares = project_shares()
    measured = []
    print(f"\n{'events':>10} {'folding':>8} {'rows':>11} {'model':>8} {'bytes':>12} {'bytes/row':>9} {'compact':>8}")
    for n in sizes:
        m = measure(n, args.rate, args.detail_min, args.cache_dir)
        measured.append(m)
        for key, fold in (("folded", args.detail_min), ("exact", 0)):
            f = m[key]
            model = model_rows(m["events"], shares, mirrors, dims, fold)
            print(
                f"{m['events']:>10,} {fold:>8,} {f['rows']:>11,} {model / f['rows'] - 1:>+8.1%} {f['bytes']:>12,} "
                f"{f['bytes'] / f['rows']:>9.2f} {f['seconds']:>7.2f}s",
                flush=True,
            )
        print(
            f"{'':>10} (run {m['run_s']:.1f} s, history exact; its block files before compaction: "
            f"{m['block_bytes']:,} bytes)",
            flush=True,
        )
    for a, b in zip(measured, measured[1:]):
        growth = [
            math.log(b[k]["rows"] / a[k]["rows"]) / math.log(b["events"] / a["events"]) for k in ("folded", "exact")
        ]
        print(
            f"row growth from {a['events']:,} to {b['events']:,} events: rows ~ events^{growth[0]:.2f} (folded), "
            f"events^{growth[1]:.2f} (every row)"
        )
    last = measured[-1]
    per_row = max(last[k]["bytes"] / last[k]["rows"] for k in ("folded", "exact"))
    print(
        f"\nat {args.volume / 1e9:.1f} billion downloads a day (assumption: rows as the model of the measured mixes "
        f"gives them, checked against the measurements above; {per_row:.2f} bytes a row, the larger of the two "
        f"measured at {last['events']:,} events: more rows per project at real volume compress at least as well):"
    )
    results = {}
    for label, fold in (("default folding", args.detail_min), ("every row", 0)):
        rows = model_rows(args.volume, shares, mirrors, dims, fold)
        year = rows * per_row * DAYS_A_YEAR
        results[fold] = year
        print(
            f"  {label} (rollup_detail_min_downloads {fold}): {rows / 1e6:,.1f} M rows a day, "
            f"{rows * per_row / 1e9:.2f} GB a day, {year / 1e9:,.0f} GB a year"
        )
    bpr = last["folded"]["bytes"] / last["folded"]["rows"]
    rows = model_rows(args.volume, shares, mirrors, dims, args.detail_min)
    print(f"  the year stays within 150 GB up to {150e9 / (rows * DAYS_A_YEAR):.1f} bytes a row (default folding)")
    print(
        f"\ntargets: <= 12 bytes a rollup row after compaction: {bpr:.2f} ({'met' if bpr <= 12 else 'MISSED'}); "
        f"<= 150 GB a year with the default folding: {results[args.detail_min] / 1e9:,.0f} GB "
        f"({'met' if results[args.detail_min] <= 150e9 else 'MISSED'})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
