"""Each sealed block's downloads per project (`recent_downloads`) and of all projects (`block_totals`).

What "trending now" needs and the rest of the sink does not hold: the daily rollups are per day, and the per-second
windows keep only each second's top 10, so neither says exactly how often a project was downloaded in the last
hour. A sealed rollup block does: it covers 10 aligned minutes inside one hour, and its counts are final (the
lateness horizon has passed them). So every block's `overall` counts are also written here, keyed by the block's
end, with overwrite semantics: writing a block again (a resend after recovery) writes the same figures, and a
block written here but not yet applied to the rollups is re-sent and written again. The rows are written before
the block's history file (dataflow/blocks.py), so none is missing once the block is applied.

A bucket that spans more than one hour (a batch run's end-of-input bucket holds a day's remaining blocks) carries
no per-hour detail and is left out: trending is about the live stream. `block_totals` outlive the per-project rows:
they give past days' hour-of-day profile, which the trending baseline uses (sink/trending.py), and a synthetic
history writes them for its days too.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Optional

from pypi_pulse.sink.base import Sink
from pypi_pulse.sink.model import RollupBucket

HOUR_S = 3600

UPSERT_RECENT = (
    "INSERT INTO recent_downloads (block_end, project, downloads) VALUES (?, ?, ?) "
    "ON CONFLICT (block_end, project) DO UPDATE SET downloads = excluded.downloads"
)
UPSERT_TOTAL = (
    "INSERT INTO block_totals (block_end, downloads) VALUES (?, ?) "
    "ON CONFLICT (block_end) DO UPDATE SET downloads = excluded.downloads"
)


def within_one_hour(bucket: RollupBucket) -> bool:
    return bucket.bucket // HOUR_S == (bucket.bucket + bucket.span - 1) // HOUR_S


def overall_by_project(counts) -> dict[str, int]:
    """A bucket's `overall` downloads per project, whatever form its counts take: a dataflow block's merged
    columns, or a mapping."""
    if hasattr(counts, "dim_of") and hasattr(counts, "dims"):  # dataflow.clock.BlockRows
        if "overall" not in counts.dims:
            return {}
        mask = counts.dim_of == counts.dims.index("overall")
        return dict(zip(counts.p_table[counts.projects[mask]].tolist(), counts.counts[mask].tolist()))
    out: dict[str, int] = defaultdict(int)
    for (_day, project, dim, _cat), n in counts.items():
        if dim == "overall":
            out[project] += n
    return dict(out)


def record_blocks(sink: Sink, blocks: Iterable[tuple[int, int, Mapping[str, int]]]) -> None:
    """Write (block end, part, {project: downloads}) in one transaction, replacing what that part held. A sharded
    dataflow seals a block as its shards' parts (disjoint projects), each written when it comes, perhaps hours of
    event time apart in a replay: each part's total is kept (`block_part_totals`) and a block's total is their
    sum, whole once every part is in, whatever their order, and a part written again replaces itself."""
    recent, parts, ends = [], [], set()
    for end, part, per_project in blocks:
        recent += [(end, p, int(n)) for p, n in sorted(per_project.items()) if n]
        parts.append((end, part, int(sum(per_project.values()))))
        ends.add(end)
    if ends:
        marks = ", ".join("?" for _ in ends)
        sink._execute_many_in_transaction(
            [
                (UPSERT_RECENT, recent),
                (
                    "INSERT INTO block_part_totals (block_end, part, downloads) VALUES (?, ?, ?) "
                    "ON CONFLICT (block_end, part) DO UPDATE SET downloads = excluded.downloads",
                    parts,
                ),
                (
                    "INSERT INTO block_totals (block_end, downloads) SELECT block_end, SUM(downloads) "
                    f"FROM block_part_totals WHERE block_end IN ({marks}) GROUP BY block_end "
                    "ON CONFLICT (block_end) DO UPDATE SET downloads = excluded.downloads",
                    [tuple(sorted(ends))],
                ),
            ]
        )


def record_day_profile(sink: Sink, block_totals: list[tuple[int, int]]) -> None:
    """All-project (block end, downloads) of a day that has no streamed blocks (a synthetic history's)."""
    sink._execute_many_in_transaction([(UPSERT_TOTAL, block_totals)])


def prune(sink: Sink, newest_end: int, recent_keep_s: float, totals_keep_s: float) -> None:
    sink._execute_in_transaction(
        [
            ("DELETE FROM recent_downloads WHERE block_end <= ?", (int(newest_end - recent_keep_s),)),
            ("DELETE FROM block_totals WHERE block_end <= ?", (int(newest_end - totals_keep_s),)),
            ("DELETE FROM block_part_totals WHERE block_end <= ?", (int(newest_end - totals_keep_s),)),
        ]
    )


def newest_block_end(sink: Sink) -> Optional[int]:
    ((v,),) = sink.query("SELECT MAX(block_end) FROM recent_downloads")
    return None if v is None else int(v)
