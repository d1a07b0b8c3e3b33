"""How long a Bytewax worker stands still while its recovery snapshot is stored, by the size of the state, and what
writing packed state once beside the recovery store (`dataflow/spill.py`) leaves of it.

    python3 benchmarks/snapshot_stall.py                       # states of 0, 10, 20, 40 and 80 MiB
    python3 benchmarks/snapshot_stall.py --sizes 40 --seconds 30

A one-step dataflow with a recovery store receives an item every 2 ms and holds a state of packed bytes (as the
clock holds its closed windows and minutes). Every epoch Bytewax asks for a snapshot and stores it from the
worker's thread; the worker receives nothing meanwhile. Per size, the state is snapshotted as the bytes themselves
("copied", as a snapshot without a spill store would carry them) and through a `SpillStore` ("spilled", as the
clock's are: written once, then referred to). Printed: the longest gaps between two items, one per epoch, as median and
max.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from statistics import median

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def stalls(size_mib: int, spilled: bool, seconds: float, epoch_s: float, work: Path) -> list[float]:
    """The worker's longest gaps between items, as many as there were epochs."""
    import bytewax.operators as op
    from bytewax.dataflow import Dataflow
    from bytewax.operators import StatefulLogic
    from bytewax.recovery import RecoveryConfig, init_db_dir
    from bytewax.run import cli_main
    from bytewax.testing import TestingSource

    from pypi_pulse.dataflow.spill import SpillStore

    gaps: list[float] = []
    state = {"packed": [os.urandom(2**20) for _ in range(size_mib)]}  # 1 MiB blobs, like packed minutes
    store = SpillStore(work / "spill") if spilled else None

    class Holder(StatefulLogic):
        last = None

        def on_item(self, value):
            now = time.perf_counter()
            if self.last is not None:
                gaps.append(now - self.last)
            self.last = now
            return [], StatefulLogic.RETAIN

        def snapshot(self):
            return store.dumps(state) if store is not None else state

    def items():
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            time.sleep(0.002)
            yield 1

    flow = Dataflow("snapshot_stall")
    held = op.stateful(
        "hold", op.key_on("one", op.input("in", flow, TestingSource(items())), lambda _: "k"), lambda resume: Holder()
    )
    op.inspect("out", held, lambda *_: None)
    recovery = work / "recovery"
    recovery.mkdir()
    init_db_dir(recovery, 1)
    cli_main(
        flow,
        workers_per_process=1,
        epoch_interval=timedelta(seconds=epoch_s),
        recovery_config=RecoveryConfig(str(recovery)),
    )
    epochs = max(1, int(seconds / epoch_s))
    return sorted(gaps)[-epochs:]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", default="0,10,20,40,80", help="state sizes in MiB, comma-separated")
    ap.add_argument("--seconds", type=float, default=20.0, help="length of each run")
    ap.add_argument("--epoch", type=float, default=2.0, help="Bytewax epoch (snapshot) interval, s")
    args = ap.parse_args()
    from pypi_pulse.logs import setup

    setup()  # quiet, as the CLI is by default
    C.print_machine()
    print(f"an item every 2 ms for {args.seconds:.0f} s, epoch {args.epoch:g} s; the longest gap of each epoch:")
    for size in (int(s) for s in args.sizes.split(",")):
        line = [f"{size:>4} MiB of packed state:"]
        for spilled in (False, True):
            with tempfile.TemporaryDirectory() as tmp:
                worst = stalls(size, spilled, args.seconds, args.epoch, Path(tmp))
            line.append(
                f"{'spilled' if spilled else 'copied'} median {median(worst) * 1000:,.0f} ms, "
                f"max {max(worst) * 1000:,.0f} ms"
            )
            if not size:
                break  # nothing to spill
        print("  ".join(line), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
