"""The recovery store all members of a dataflow cluster share: made once, whole, before any member opens it.

Bytewax (0.21, src/recovery.rs) has each process open every `*.sqlite3` file of the directory it is given and
report the partitions it found; worker 0 then picks, for each partition, one of the workers that can see it to
write it (`calc_primaries`), and a resume reads the progress of all partitions. So the partitions may be spread
over the members' disks as long as the cluster as a whole sees each once - but which member owns which state is
not stable: a snapshot goes to partition hash(key) % partitions, whoever holds that file, and our own closed state
(`recovery/spill/shard-N`, dataflow/spill.py) is read back by whichever worker Bytewax gives the shard after a
restart, on a reshaped cluster another member's. Hence one directory every member mounts (one machine's disk for
a local cluster, a ReadWriteMany volume for pods), and partitions made once for it.

`init_db_dir` writes the partitions one after the other, so a member listing the directory meanwhile would open
a half-made file, or resume with partitions missing. The store is therefore made in a sibling directory and
renamed into place (one atomic rename on a POSIX filesystem, NFS included) by one process only: the one that
starts a local cluster, or member 0 of a cluster over several machines; the other members wait until it is there.
"""

from __future__ import annotations

import errno
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional

import structlog
from bytewax.recovery import init_db_dir

from pypi_pulse.errors import UserError

log = structlog.get_logger(__name__)
PARTITIONS = "part-*.sqlite3"  # the names init_db_dir gives


def partitions(recovery_dir: Path) -> int:
    """How many partition files the store holds (0: no store yet)."""
    return sum(1 for _ in recovery_dir.glob(PARTITIONS)) if recovery_dir.is_dir() else 0


def make_store(recovery_dir: Path, count: int, fresh: bool = False) -> None:
    """Make the store of `count` partitions unless there is one; `fresh` discards the one there is (the embedded
    broker is memory-only, so the offsets in it died with the broker)."""
    if fresh and recovery_dir.exists():
        shutil.rmtree(recovery_dir)
    if partitions(recovery_dir):
        return
    parent = recovery_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{recovery_dir.name}.making-*"):  # a maker that died half-way
        shutil.rmtree(stale, ignore_errors=True)
    making = parent / f".{recovery_dir.name}.making-{os.getpid()}"
    making.mkdir()
    init_db_dir(making, count)
    try:
        os.rename(making, recovery_dir)  # replaces a missing or empty directory, never a store
    except OSError as exc:
        shutil.rmtree(making, ignore_errors=True)
        if partitions(recovery_dir):  # made by another process after all (two makers: a misconfiguration)
            return
        if exc.errno in (errno.EXDEV, errno.EBUSY) or os.path.ismount(recovery_dir):
            raise UserError(
                f"recovery directory {recovery_dir} is a mount point: mount the volume at {parent} (DATA_DIR) "
                "instead, so that the store can be made beside it and renamed into place"
            ) from None
        raise UserError(
            f"recovery directory {recovery_dir} holds files but no Bytewax partitions ({PARTITIONS}): move it "
            "away to start the dataflow's state afresh"
        ) from None
    log.info("dataflow.recovery_store_made", path=str(recovery_dir), partitions=count)


def wait_for_store(
    recovery_dir: Path, wait_s: float, poll_s: float = 0.2, tick: Optional[Callable[[], None]] = None
) -> None:
    """Return once the store is there (made by member 0); fail naming what to check after `wait_s`. `tick` each
    poll (the liveness heartbeat, so that the member is not restarted before it can say what it waited for)."""
    deadline = time.monotonic() + wait_s
    while not partitions(recovery_dir):
        if tick is not None:
            tick()
        if time.monotonic() >= deadline:
            raise UserError(
                f"no recovery store in {recovery_dir} after {wait_s:g} s: member 0 makes it; is member 0 running, "
                "and do all members mount the same volume there (ReadWriteMany)?"
            )
        time.sleep(poll_s)
