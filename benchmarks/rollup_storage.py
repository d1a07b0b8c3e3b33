"""Rows and bytes per day of daily rollups at the real PyPI mix (about 869,000 projects a month, a heavy tail).

Two parts:
1. Measured: `--events` synthetic events of one day (the live generator: real top-15,000 popularity plus the
   `pulse-tail-NNNNNN` heavy tail, real country/Python/installer/system mixes) go through the dataflow's own
   parser and minute rollups into a real SQLite sink; we count the daily rows and the bytes they take on disk
   (table + both indexes), i.e. bytes per row.
2. Model: the same mixes give, for any daily volume V, the expected number of distinct
   (project, dimension, category) rows, sum of 1 - exp(-expected count); checked against part 1 at the
   measured volume, then evaluated at the real volume (the 30-day top-15,000 list / 30, plus the tail share).

Usage: python benchmarks/rollup_storage.py [--events 300000]   (about 2 minutes on the 2-core machine)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np


def measured(n_events: int) -> dict:
    from pypi_pulse.dataflow.clock import MinuteRollup
    from pypi_pulse.dataflow.parse import day_of, parse_batch
    from pypi_pulse.dataflow.source import RawBatch
    from pypi_pulse.producer.synthetic import SyntheticSource
    from pypi_pulse.sink.base import open_sink

    src = SyntheticSource(seed=1)
    day0 = 1772323200
    rollup = MinuteRollup()
    t0 = time.perf_counter()
    step = 50_000
    for i in range(0, n_events, step):
        k = min(step, n_events - i)
        ts = sorted(day0 + 86399 * ((i + j) / n_events) for j in range(k))
        part = parse_batch(RawBatch(0, 1, [v for v, _ in src.encoded(ts)], 0, True))
        for cols in part.minutes.values():
            rollup.add(cols)
    day = day_of(day0)
    rows = [(p, d, c, n) for (_day, p, d, c), n in rollup.final(day).items()]
    gen_s = time.perf_counter() - t0
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "r.db")
        with open_sink(f"sqlite:///{path}") as db:
            db.db.execute("VACUUM")
            before = db.query("PRAGMA page_count")[0][0] * db.query("PRAGMA page_size")[0][0]
            t1 = time.perf_counter()
            n = db.backfill_day(day, rows, "benchmark")
            write_s = time.perf_counter() - t1
            db.db.execute("VACUUM")
            after = db.query("PRAGMA page_count")[0][0] * db.query("PRAGMA page_size")[0][0]
            per_dim = dict(db.query("SELECT dimension, COUNT(*) FROM daily GROUP BY dimension ORDER BY 2 DESC"))
            projects = db.query("SELECT COUNT(DISTINCT project) FROM daily")[0][0]
    return {
        "events": n_events,
        "rows": n,
        "bytes": after - before,
        "bytes_per_row": (after - before) / n,
        "projects": projects,
        "per_dimension": per_dim,
        "aggregate_s": gen_s,
        "write_s": write_s,
    }


def _marginals():
    """(dimension, probabilities of its categories) for one non-mirror download, as the synthetic generator draws."""
    from pypi_pulse import rules
    from pypi_pulse.producer import popularity as pop

    def mix(w, key=lambda v: v):
        acc, prev = {}, 0.0
        for v, cw in zip(w.values, w.cum_weights):
            acc[key(v)] = acc.get(key(v), 0.0) + cw - prev
            prev = cw
        tot = sum(acc.values())
        return {k: v / tot for k, v in acc.items()}

    inst = mix(pop.INSTALLERS, lambda v: None if v is None else v[0])
    m = sum(v for k, v in inst.items() if rules.is_mirror(k))
    inst = {k: v / (1 - m) for k, v in inst.items() if not rules.is_mirror(k)}
    p0 = inst[None]  # no user agent: details is null, so every details dimension is null

    def with_null_details(d):
        out = {k: (1 - p0) * v for k, v in d.items()}
        out[None] = out.get(None, 0.0) + p0
        return out

    minor = mix(pop.PYTHONS, rules.python_minor)
    major = mix(pop.PYTHONS, rules.python_major)
    system = mix(pop.SYSTEMS, lambda v: rules.system_category(None if v is None else v[0]))
    dims = {
        "installer": inst,
        "python_minor": with_null_details(minor),
        "python_major": with_null_details(major),
        "system": with_null_details(system),
        "cpu": with_null_details(mix(pop.CPUS)),
        "ci": with_null_details(mix(pop.CI, rules.ci_category)),
        "country": mix(pop.countries(), lambda v: "ZZ" if v is None else v),
        "file_type": mix(pop.FILE_TYPES),
        "version": {"newest": 0.6, "previous": 0.25, "older": 0.15},
        "overall": {None: 1.0},
    }
    return m, {k: np.array(list(v.values())) for k, v in dims.items()}


def project_rates():
    """Each project's share of all downloads: the top 15,000 by their real 30-day counts, then the tail."""
    from pypi_pulse.producer import popularity as pop

    cw = np.array(pop.packages().cum_weights, dtype=float)
    top = np.diff(np.concatenate([[0.0], cw])) / cw[-1] * (1 - pop.TAIL_SHARE)
    tail = pop.tail_weights() * pop.TAIL_SHARE
    real_daily = cw[-1] / 30 / (1 - pop.TAIL_SHARE)
    return np.concatenate([top, tail]), real_daily


def model_rows(volume: float, shares, mirror_share: float, dims, detail_min: float = 0) -> dict:
    """Expected rows a day; with `detail_min`, projects below it keep one `other` row per folded dimension
    (sink/rollup.py's compaction of complete days)."""
    from pypi_pulse.sink.rollup import FOLDED_DIMENSIONS

    lam = volume * shares
    out = {"with_mirrors": float(np.sum(-np.expm1(-lam)))}
    lam_nm = lam * (1 - mirror_share)
    if detail_min > 0:
        small = lam < detail_min
        folded = float(np.sum(-np.expm1(-lam_nm[small])))  # one `other` row if the project had any download
        dims = dict(dims)
        for dim in FOLDED_DIMENSIONS:
            q = dims.pop(dim)
            total = folded
            for chunk in np.array_split(lam_nm[~small], 16):
                total += float(np.sum(-np.expm1(-np.outer(chunk, q))))
            out[dim] = total
    for dim, q in dims.items():
        total = 0.0
        for chunk in np.array_split(lam_nm, 16):
            total += float(np.sum(-np.expm1(-np.outer(chunk, q))))
        out[dim] = total
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--events", type=int, default=300_000, help="synthetic events of one day to measure")
    ap.add_argument(
        "--detail-min",
        type=float,
        default=1000,
        help="rollup_detail_min_downloads for the compacted estimate (default 1000, the setting's default)",
    )
    args = ap.parse_args()

    meas = measured(args.events)
    print(
        f"measured: {meas['events']:,} events of one day -> {meas['rows']:,} daily rows, {meas['projects']:,} projects, "
        f"{meas['bytes'] / 1e6:.1f} MB in SQLite = {meas['bytes_per_row']:.0f} bytes/row "
        f"(aggregate {meas['aggregate_s']:.1f} s, write {meas['write_s']:.1f} s = {meas['rows'] / meas['write_s']:,.0f} rows/s)"
    )
    print("  rows by dimension:", ", ".join(f"{k} {v:,}" for k, v in meas["per_dimension"].items()))

    mirror_share, dims = _marginals()
    shares, real_daily = project_rates()
    at_measured = model_rows(args.events, shares, mirror_share, dims)
    print(
        f"model at {args.events:,} events/day: {sum(at_measured.values()):,.0f} rows "
        f"(measured {meas['rows']:,}: {sum(at_measured.values()) / meas['rows'] - 1:+.1%})"
    )
    month = float(np.sum(-np.expm1(-30 * real_daily * shares)))
    print(
        f"real PyPI volume: {real_daily / 1e9:.2f} billion downloads/day; projects downloaded in 30 days (model): {month:,.0f}"
    )
    print(f"{'downloads/day':>15} {'rows/day':>12} {'projects/day':>13} {'MB/day':>9} {'GB/400 days':>12}")
    for v in (1e6, 1e7, 1e8, 1e9, real_daily):
        r = model_rows(v, shares, mirror_share, dims)
        rows = sum(r.values())
        mb = rows * meas["bytes_per_row"] / 1e6
        print(f"{v:>15,.0f} {rows:>12,.0f} {r['with_mirrors']:>13,.0f} {mb:>9,.0f} {mb * 400 / 1e3:>12,.1f}")
    r = model_rows(real_daily, shares, mirror_share, dims)
    print(
        "  rows/day at real volume by dimension:",
        ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r.items(), key=lambda kv: -kv[1])),
    )
    print(f"after folding the detail of projects under {args.detail_min:g} downloads/day (complete days):")
    print(f"{'downloads/day':>15} {'rows/day':>12} {'MB/day':>9} {'GB/400 days':>12}")
    for v in (1e6, 1e7, 1e8, 1e9, real_daily):
        rows = sum(model_rows(v, shares, mirror_share, dims, args.detail_min).values())
        mb = rows * meas["bytes_per_row"] / 1e6
        print(f"{v:>15,.0f} {rows:>12,.0f} {mb:>9,.0f} {mb * 400 / 1e3:>12,.1f}")
    r = model_rows(real_daily, shares, mirror_share, dims, args.detail_min)
    print(
        "  folded rows/day at real volume by dimension:",
        ", ".join(f"{k} {v:,.0f}" for k, v in sorted(r.items(), key=lambda kv: -kv[1])),
    )


if __name__ == "__main__":
    main()
