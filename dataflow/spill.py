"""Closed state written once beside the recovery store, so that the clock's per-epoch snapshot carries a reference
to it instead of a copy.

Bytewax stores each epoch's snapshot in its recovery database from the worker's thread, and the worker stands
still meanwhile: about 10 ms per MiB of snapshot on the 2-core machine (`benchmarks/snapshot_stall.py`: a median
of 396 ms an epoch for 40 MiB, 822 ms for 80 MiB). Most of the clock's state is
closed and never changes once packed: every complete rollup minute (2.4 MiB at 20,000 events/s), the sealed
blocks kept until the sink has them, every emitted window. At the end of a 10-minute block at 20,000 events/s
that was about 27 of an epoch's 40 MiB.

So a snapshot is pickled with a `persistent_id` hook: a packed blob (a `bytes` object of `MIN_BYTES` or more) is
appended to a segment file the first time a snapshot meets it, and from then on pickled as (segment, offset,
length). Each snapshot's new blobs go to one segment, flushed and fsynced before the snapshot is handed to Bytewax,
so a committed snapshot never refers to bytes that are not on disk. A segment is deleted once none of the last
`KEEP_SNAPSHOTS` snapshots refers to it: Bytewax resumes from the last committed epoch, one or two snapshots behind
the last one taken.
"""

from __future__ import annotations

import io
import os
import pickle
import time
from collections import deque
from pathlib import Path
from typing import Any, Optional

import structlog

from pypi_pulse.errors import UserError

log = structlog.get_logger(__name__)

Ref = tuple[str, int, int]  # segment file name, offset, length


class SpillStore:
    MIN_BYTES = 8 * 1024  # a packed window (tens of KiB at 20,000 events/s) and up; small ones stay inline
    KEEP_SNAPSHOTS = 4
    SUFFIX = ".seg"

    def __init__(self, directory: Path):
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        # id(blob) -> (blob, ref) for the blobs the last snapshot referred to: they are not written again. The blob
        # is held so that its id cannot be reused by another object while it is listed.
        self.known: dict[int, tuple[bytes, Ref]] = {}
        self.recent: deque[set[str]] = deque(maxlen=self.KEEP_SNAPSHOTS)
        self.sizes: dict[str, int] = {}  # segment name -> bytes, for `bytes_on_disk`
        self._seq = 0

    @property
    def bytes_on_disk(self) -> int:
        return sum(self.sizes.values())

    # ---- snapshots ----------------------------------------------------------------------------------------
    def dumps(self, obj: Any) -> bytes:
        buf = io.BytesIO()
        segment = _Segment(self.dir / f"{time.time_ns()}-{os.getpid()}-{self._seq}{self.SUFFIX}")
        self._seq += 1
        used: dict[int, tuple[bytes, Ref]] = {}
        _SpillingPickler(buf, self.known, used, segment, self.MIN_BYTES).dump(obj)
        segment.close()  # on disk before Bytewax can commit a snapshot that refers to it
        if segment.written:
            self.sizes[segment.path.name] = segment.written
            log.debug("spill.segment", bytes=segment.written, blobs=segment.blobs, snapshot_bytes=buf.tell())
        self.known = used
        self._forget_unreferenced({ref[0] for _, ref in used.values()})
        return buf.getvalue()

    def loads(self, data: bytes) -> Any:
        files: dict[str, Any] = {}
        try:
            return _SpillingUnpickler(io.BytesIO(data), self, files).load()
        finally:
            for f in files.values():
                f.close()
            self._forget_unreferenced({ref[0] for _, ref in self.known.values()})

    def _forget_unreferenced(self, segments: set[str]) -> None:
        self.recent.append(segments)
        keep = set().union(*self.recent)
        for path in self.dir.glob(f"*{self.SUFFIX}"):
            if path.name not in keep:
                path.unlink(missing_ok=True)
                self.sizes.pop(path.name, None)
        for path in self.dir.glob("*.tmp"):  # a segment whose snapshot never finished
            path.unlink(missing_ok=True)


# The (un)picklers are classes of the module, not defined in `dumps`/`loads`: a class made per call is a reference
# cycle, and its closure kept that snapshot's blobs alive until a full garbage collection, minutes later. A live
# dataflow then held sealed blocks it had already released, 20-70 MiB at 20,000 events/s.
class _SpillingPickler(pickle.Pickler):
    def __init__(self, buf, known: dict, used: dict, segment: _Segment, min_bytes: int):
        super().__init__(buf, protocol=pickle.HIGHEST_PROTOCOL)
        self.known, self.used, self.segment, self.min_bytes = known, used, segment, min_bytes

    def persistent_id(self, o):
        if type(o) is not bytes or len(o) < self.min_bytes:
            return None
        hit = self.known.get(id(o))
        ref = hit[1] if hit is not None and hit[0] is o else self.segment.append(o)
        self.used[id(o)] = (o, ref)
        return ref


class _SpillingUnpickler(pickle.Unpickler):
    def __init__(self, data, store: SpillStore, files: dict):
        super().__init__(data)
        self.store, self.files = store, files

    def persistent_load(self, ref):
        name, offset, length = ref
        f = self.files.get(name)
        directory = self.store.dir
        if f is None:
            try:
                f = self.files[name] = open(directory / name, "rb")
                self.store.sizes[name] = os.fstat(f.fileno()).st_size
            except FileNotFoundError:
                raise UserError(
                    f"the recovery snapshot refers to {directory / name}, which is gone: the recovery store "
                    "is incomplete; start again from the topic with --fresh-recovery (pypi-pulse dataflow) or "
                    "delete the recovery directory"
                ) from None
        f.seek(offset)
        blob = f.read(length)
        self.store.known[id(blob)] = (blob, ref)
        return blob


class _Segment:
    """One snapshot's new blobs, appended to a file that exists under its final name only once complete."""

    def __init__(self, path: Path):
        self.path = path
        self.tmp = path.with_suffix(".tmp")
        self.f: Optional[io.BufferedWriter] = None
        self.written = 0
        self.blobs = 0

    def append(self, blob: bytes) -> Ref:
        if self.f is None:
            self.f = open(self.tmp, "wb")
        offset = self.written
        self.f.write(blob)
        self.written += len(blob)
        self.blobs += 1
        return (self.path.name, offset, len(blob))

    def close(self) -> None:
        if self.f is None:
            return
        self.f.flush()
        os.fsync(self.f.fileno())
        self.f.close()
        os.replace(self.tmp, self.path)
        fd = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)  # the rename itself survives a crash
        finally:
            os.close(fd)
