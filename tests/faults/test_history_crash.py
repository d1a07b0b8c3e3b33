"""A process SIGKILLed while it writes history files leaves only whole files behind, and writing the same blocks
again after the "restart" counts each block once.

Black-box at the file layer: a child process writes large block files (each takes a good part of a second) and is
killed at a random moment, most likely inside a write, between a block's seal and its file's rename. Whatever it
left is then read with DuckDB, as the API reads it; the blocks are written again as a restarted dataflow re-seals
them, and the day compacted: every count is exactly once.
"""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time

from pypi_pulse.sink.history import History
from pypi_pulse.sink.history_reader import HistoryReader

DAY_START = 1795478400  # 2026-11-24T00:00:00Z
ROWS = 400_000
BLOCKS = 6

WRITER = """
import sys
import pyarrow as pa
from pypi_pulse.sink.history import History

root, rows, blocks, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])

def block_rows(b):
    return pa.table({
        "project": pa.array([f"p{i:07d}" for i in range(rows)]),
        "dimension": pa.array(["overall"] * rows),
        "category": pa.nulls(rows, pa.string()),
        "downloads": pa.array([b + 1] * rows, pa.int64()),
    })

history = History(root)
for b in range(blocks):
    table = block_rows(b)
    sys.stdin.readline()  # each block only once the test lets it go: it cannot run ahead of the kill
    print("writing", b, flush=True)
    history.write_block(start + 600 * b, 600, table)
"""


def _expected_downloads(blocks: int) -> int:
    return sum((b + 1) * ROWS for b in range(blocks))


def test_a_writer_killed_mid_write_leaves_whole_files_and_a_rewrite_counts_each_block_once(tmp_path):
    root = tmp_path / "history"
    rng = random.Random(23)
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), str(ROWS), str(BLOCKS), str(DAY_START)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    kill_after_block = rng.randrange(1, BLOCKS - 1)
    proc.stdin.write("go\n" * (kill_after_block + 1))  # blocks 0 .. kill_after_block, then it waits
    proc.stdin.flush()
    for line in proc.stdout:
        if line.strip() == f"writing {kill_after_block}":
            break
    time.sleep(rng.uniform(0.0, 0.3))  # inside the block's write, most likely
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)

    history = History(root)
    day = history.days()[0]
    written = history.day_files(day).blocks
    assert kill_after_block <= len(written) <= kill_after_block + 1  # whole files only: none half-renamed
    for name in written:  # every visible block complete, none partial
        block = history.read(day, name)
        assert block.num_rows == ROWS and set(block["downloads"].to_pylist()) == {
            (written[name][0] - DAY_START) // 600 + 1
        }
    reader = HistoryReader(history)
    assert reader.query("SELECT count(*), sum(downloads) FROM daily") == [(ROWS, _expected_downloads(len(written)))]
    (totals,) = reader.query("SELECT sum(downloads) FROM daily_totals")
    assert totals == (_expected_downloads(len(written)),)

    # the restart: the dataflow seals its unapplied blocks again (same names), then the rest
    subprocess.run(
        [sys.executable, "-c", WRITER, str(root), str(ROWS), str(BLOCKS), str(DAY_START)],
        input="go\n" * BLOCKS,
        text=True,
        check=True,
    )
    assert reader.query("SELECT sum(downloads), count(*) FROM daily") == [(_expected_downloads(BLOCKS), ROWS)]
    assert history.compact(day)
    assert reader.query("SELECT sum(downloads) FROM daily_totals") == [(_expected_downloads(BLOCKS),)]
    assert reader.query("SELECT count(*), min(downloads), max(downloads) FROM daily") == [
        (ROWS, _expected_downloads(BLOCKS) // ROWS, _expected_downloads(BLOCKS) // ROWS)
    ]
    leftovers = [p.name for p in (root / f"day={day}").iterdir()]
    assert leftovers == ["day.parquet"]  # the blocks and the killed write's temporary file are gone
