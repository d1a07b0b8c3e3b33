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
a half-made file. The store is therefore made aside and put in place whole - the directory renamed into place (one
atomic rename on a POSIX filesystem, NFS included), or, where the directory is there already, each partition file
moved in whole - by one process only: the one that starts a local cluster, or member 0 of a cluster over several
machines; the other members wait until there are partitions.
"""

from __future__ import annotations

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
    if recovery_dir.is_dir():
        _make_inside(recovery_dir, count)
        return
    parent = recovery_dir.parent
    parent.mkdir(parents=True, exist_ok=True)
    for stale in parent.glob(f".{recovery_dir.name}.making-*"):  # a maker that died half-way
        shutil.rmtree(stale, ignore_errors=True)
    making = parent / f".{recovery_dir.name}.making-{os.getpid()}"
    making.mkdir()
    init_db_dir(making, count)
    try:
        os.rename(making, recovery_dir)  # one step: the store is there whole, or not at all
    except OSError:
        shutil.rmtree(making, ignore_errors=True)
        if not recovery_dir.is_dir():
            raise
        _make_inside(recovery_dir, count)  # made meanwhile: by another maker (a misconfiguration), or empty
        return
    log.info("dataflow.recovery_store_made", path=str(recovery_dir), partitions=count)


def _make_inside(recovery_dir: Path, count: int) -> None:
    """The directory is there already (a volume mounted on it, or one whose partitions were deleted to start
    afresh, which Bytewax's documentation suggests): the partitions are made in a subdirectory, which Bytewax does
    not look into, and moved up one by one, each whole. A member listing the directory meanwhile sees some of
    them, which Bytewax allows (each partition needs one worker that sees it, and member 0 sees all before it
    starts). A maker that died between two moves left the rest in its subdirectory: they are moved up now."""
    leftovers = sorted(recovery_dir.glob(f".making-*/{PARTITIONS}"))
    if partitions(recovery_dir) and leftovers:
        for part in leftovers:
            os.replace(part, recovery_dir / part.name)
    for stale in recovery_dir.glob(".making-*"):
        shutil.rmtree(stale, ignore_errors=True)
    if partitions(recovery_dir):
        return
    making = recovery_dir / f".making-{os.getpid()}"
    making.mkdir()
    init_db_dir(making, count)
    for part in sorted(making.glob(PARTITIONS)):
        os.replace(part, recovery_dir / part.name)
    shutil.rmtree(making, ignore_errors=True)
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
