"""A process of its own that applies sealed rollup blocks, so that a live worker never spends a block's CPU.

Why a process: a full 10-minute block at 20,000 events/s is about 4 million rows, some 50 s of upserts. Applied
in slices between window writes (the inline way), every second of it comes out of the one Bytewax worker that
also parses and counts the stream, and the windows fall behind while it goes in (benchmarks/latency.py). A thread
does not help: SQLite releases the GIL at every row, and a thread that hands it back that often is starved by a
busy one. A process has its own interpreter; the worker only writes the block to a file once. A live dataflow
hands its blocks over unmerged, as their minutes' packed bytes, and the writer merges them too (`SealedBlock`): the
worker then spends nothing on a block but that file, and its memory no longer swells and fragments at each seal.
The writer in turn merges and applies each block in a child it forks for that block (`_apply_forked`), so that
neither process keeps what a block's millions of short-lived objects leave behind.

Exactly once is unchanged: the writer applies a block through the same `Sink.apply_in_slices` (each slice in its
own transaction, with its record), and the clock keeps re-sending a block until the sink says it is applied.

With SQLite the two processes take turns at the database's one write lock (`turn`): a window write waits for at
most the slice in progress (`SLICE_ROWS`, tens of milliseconds), and the writer steps aside between slices while a
window write is waiting (`want`). It also takes at most `SHARE` of a core, less while windows reach the sink late
(`lag`), so that on a small machine the stream keeps the CPU it needs.

A locked or unreachable sink is waited out here as in the worker (sink/retry.py): a failed slice is retried with
backoff, and the restarted slices skip those recorded. The writer logs nothing about it; it shares its failed
attempts and since when it fails (`health`), and the dataflow counts and logs them with its own.
"""

from __future__ import annotations

import multiprocessing
import os
import queue
import shutil
import signal
import tempfile
import threading
import time
import traceback
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Optional

import numpy as np

from pypi_pulse.dataflow.clock import HISTORY_LAG_S, BlockRows, SealedBlock, on_time_or_history
from pypi_pulse.dataflow.heap import return_freed_memory
from pypi_pulse.sink.model import RollupBucket
from pypi_pulse.sink.retry import Outage, RetryPolicy, SinkUnavailable, one_line, patiently

SLICE_ROWS = 5_000  # ~60 ms of upserts: the longest a window write waits for the writer
SHARE = 0.5  # of a core, while windows reach the sink on time
SHARE_BEHIND = 0.1  # while they are late: the stream catches up first


class BlockWriterDied(RuntimeError):
    pass


class _DataflowGone(Exception):
    pass


class _Health:
    """The writer's outage, in shared memory: failed attempts, since when it fails (0.0: it does not), the error."""

    def __init__(self, ctx):
        self.attempts = ctx.Value("q", 0, lock=False)
        self.since = ctx.Value("d", 0.0, lock=False)
        self.error = ctx.Array("c", 240, lock=False)

    def failed(self, exc: BaseException) -> None:
        self.error.value = one_line(exc).encode(errors="replace")[:239]
        self.attempts.value += 1

    def read(self) -> tuple[int, float, str]:
        return self.attempts.value, self.since.value, self.error.value.decode(errors="replace")


class BlockWriter:
    """The dataflow's side: hand over blocks, hear which are applied, take turns at the sink's write lock."""

    def __init__(self, url: str, *, shared_lock: bool, retry: RetryPolicy = RetryPolicy(), lock_wait_s: float = 10.0):
        ctx = multiprocessing.get_context("spawn")  # the dataflow runs Bytewax's threads: a fork would copy them
        self.turn = ctx.Lock() if shared_lock else None
        self.want = ctx.Event()
        self.lag = ctx.Value("d", 0.0, lock=False)  # how late the newest window reached the sink, seconds
        self._health = _Health(ctx)
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(
            target=_serve,
            args=(url, child, self.turn, self.want, self.lag, os.getpid(), self._health, retry, lock_wait_s),
            name="pypi-pulse-block-writer",
            daemon=True,
        )
        self.proc.start()
        child.close()
        self.spool = Path(tempfile.mkdtemp(prefix="pypi-pulse-blocks-"))
        self.pending: set[int] = set()  # blocks handed over, not yet applied
        self.finished_ids: set[int] = set()  # applied by the writer: a block the clock re-sends is not sent again

    @contextmanager
    def sink_turn(self) -> Iterator[None]:
        """Hold the sink's write lock for a window write (a no-op for a sink with concurrent writers)."""
        if self.turn is None:
            yield
            return
        self.want.set()
        self.turn.acquire()
        try:
            self.want.clear()
            yield
        finally:
            self.turn.release()

    def knows(self, bucket: int) -> bool:
        return bucket in self.pending or bucket in self.finished_ids

    def submit(self, bucket: RollupBucket) -> float:
        """Hand a sealed block over; the seconds it took the worker. A dataflow block goes through a file, as
        numpy columns (`_spooled`) or, unmerged, as its minutes' packed bytes (`_spooled_minutes`): pickled through
        the pipe, a full block at 20,000 events/s held the worker for 0.6 s."""
        self._check_alive()
        t = time.perf_counter()
        counts = bucket.counts
        if isinstance(counts, BlockRows):
            msg = _spooled(bucket, self.spool)
        elif isinstance(counts, SealedBlock):
            msg = _spooled_minutes(bucket, self.spool)
        else:
            msg = bucket
        self.conn.send(msg)
        self.pending.add(bucket.bucket)
        return time.perf_counter() - t

    def health(self) -> tuple[int, float, str]:
        """(failed attempts so far, wall time since which the sink fails the writer or 0.0, the last error)."""
        return self._health.read()

    def set_lag(self, seconds: float) -> None:
        self.lag.value = seconds

    def poll(self) -> list[tuple[int, float]]:
        """Blocks applied since the last call, with the seconds each took; raises if the writer failed or died."""
        done = []
        while self.conn.poll():
            try:
                msg = self.conn.recv()
            except EOFError:
                break
            if msg[0] == "error":
                raise BlockWriterDied(f"the block writer failed applying block {msg[1]}:\n{msg[2]}")
            _, bucket, seconds = msg
            self.pending.discard(bucket)
            self.finished_ids.add(bucket)
            done.append((bucket, seconds))
        self._check_alive()
        if len(self.finished_ids) > 1_000:  # a week of blocks: the clock stopped re-sending these long ago
            self.finished_ids = set(sorted(self.finished_ids)[-500:])
        return done

    def _check_alive(self) -> None:
        if not self.proc.is_alive():
            raise BlockWriterDied(
                f"the block writer exited with code {self.proc.exitcode}; "
                f"{len(self.pending)} block(s) not applied (they are re-sent after a restart)"
            )

    def close(self, timeout_s: float = 3600.0) -> None:
        """Wait for every block handed over to be applied, then stop the writer."""
        deadline = time.monotonic() + timeout_s
        self.lag.value = -1.0  # the end of input: full speed
        while self.pending and time.monotonic() < deadline:
            if self.conn.poll(0.2):
                self.poll()
            else:
                self._check_alive()
        try:
            self.conn.send(None)
        except OSError:
            pass
        self.proc.join(10)
        if self.proc.is_alive():
            self.proc.kill()
        shutil.rmtree(self.spool, ignore_errors=True)
        if self.pending:
            raise BlockWriterDied(f"{len(self.pending)} block(s) not applied within {timeout_s:.0f} s")


def _spooled(bucket: RollupBucket, spool: Path) -> tuple:
    """A block's four numpy columns written raw to one file, narrowed where their values allow (17 instead of 32
    bytes a row; the writer widens them again), and what else it needs to rebuild the block: its name tables."""
    c = bucket.counts
    path = spool / f"{bucket.bucket}.columns"
    with open(path, "wb") as f:  # widest first: every column starts aligned
        for column, dtype in zip((c.counts, c.projects, c.categories, c.dim_of), _SPOOL_DTYPES):
            column.astype(dtype, copy=False).tofile(f)
    return ("spooled", bucket.bucket, bucket.span, str(path), len(c.counts), c.day, c.p_table, c.dims, c.c_table)


_SPOOL_DTYPES = (np.int64, np.int32, np.int32, np.int8)  # counts, projects, categories (-1: None), dimension


def _spooled_minutes(bucket: RollupBucket, spool: Path) -> tuple:
    """An unmerged block (`SealedBlock`): its minutes' packed bytes, one after the other in one file."""
    blobs = bucket.counts.blobs()
    path = spool / f"{bucket.bucket}.minutes"
    with open(path, "wb") as f:
        for blob in blobs:
            f.write(blob)
    return ("minutes", bucket.bucket, bucket.span, str(path), [len(b) for b in blobs], bucket.counts.day)


def _unspooled(msg: tuple) -> RollupBucket:
    if msg[0] == "minutes":
        _, bucket, span, path, lengths, day = msg
        data = Path(path).read_bytes()
        os.unlink(path)
        ends = np.cumsum(lengths).tolist()
        blobs = [data[end - n : end] for n, end in zip(lengths, ends)]
        return RollupBucket(bucket, SealedBlock.of_blobs(blobs, day), span=span)
    _, bucket, span, path, n, day, p_table, dims, c_table = msg
    data = Path(path).read_bytes()
    os.unlink(path)
    columns, offset = [], 0
    for dtype in _SPOOL_DTYPES:
        columns.append(np.frombuffer(data, dtype, n, offset).astype(np.int64))
        offset += n * np.dtype(dtype).itemsize
    counts, projects, categories, dim_of = columns
    return RollupBucket(bucket, BlockRows(day, p_table, projects, dims, dim_of, c_table, categories, counts), span=span)


def _share(lag_s: float) -> float:
    if lag_s >= HISTORY_LAG_S or lag_s < 0:  # history being replayed, or the end of input: no one waits
        return 1.0
    return SHARE if on_time_or_history(lag_s) else SHARE_BEHIND


def _merged(block: SealedBlock, lag) -> BlockRows:
    """Merge an unmerged block a step at a time (a minute, a dimension), at the writer's share of a core: the same
    pacing as its slices, so that on a small machine the stream keeps the CPU it needs."""
    steps = block.merge_steps()
    while True:
        t = time.perf_counter()
        rows = next(steps)
        if rows is not None:
            return rows
        time.sleep((time.perf_counter() - t) * (1.0 / _share(lag.value) - 1.0))


def _serve(
    url: str, conn, turn, want, lag, parent_pid: int, health: _Health, retry: RetryPolicy, lock_wait_s: float
) -> None:
    """The writer process: apply blocks in the order they came, each in a child process of its own (`_apply_forked`)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C stops the dataflow, which then closes this writer
    from pypi_pulse.dataflow.heap import keep_large_blocks_mapped

    keep_large_blocks_mapped()
    inbox: queue.Queue = queue.Queue()
    sending = threading.Lock()

    def reply(msg: tuple) -> None:
        with sending:  # both threads answer on the one connection
            conn.send(msg)

    def receive() -> None:  # a block is read while another is applied, so the worker never waits on a send
        while True:
            try:
                msg = conn.recv()
            except (EOFError, OSError):
                inbox.put(None)
                return
            try:
                inbox.put(_unspooled(msg) if isinstance(msg, tuple) and msg[0] in ("spooled", "minutes") else msg)
            except Exception:
                reply(("error", msg[1], traceback.format_exc()))
                inbox.put(None)
                return

    threading.Thread(target=receive, daemon=True).start()
    while True:
        bucket: Optional[RollupBucket] = inbox.get()
        if bucket is None:
            break
        t0 = time.monotonic()
        failure = _apply_forked(url, bucket, turn, want, lag, parent_pid, (health, retry, lock_wait_s))
        if failure == _DATAFLOW_GONE:
            return  # a restarted dataflow re-sends the block and resumes its slices
        if failure is not None:
            reply(("error", bucket.bucket, failure))
            return
        bid = bucket.bucket
        del bucket
        return_freed_memory()
        reply(("applied", bid, time.monotonic() - t0))


_DATAFLOW_GONE = "the dataflow is gone"


def _apply_forked(url: str, bucket: RollupBucket, turn, want, lag, parent_pid: int, patience: tuple) -> Optional[str]:
    """Merge (if unmerged) and apply one block in a child process forked for it; None once it is applied, else why
    not. Why a child: a block's merge and rows are millions of short-lived Python objects, and the arenas they
    leave half-used stay with a process for good. Merged in the writer itself, its memory rose by 19, 1 and 10 MiB
    over three blocks at 20,000 events/s; the child takes all of it with it."""
    read_end, write_end = os.pipe()
    writer_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the child: only this thread runs here, and it touches nothing the writer's other thread holds
        os.close(read_end)
        code = 0
        try:
            if not _apply(url, bucket, turn, want, lag, parent_pid, writer_pid, *patience):
                os.write(write_end, _DATAFLOW_GONE.encode())
                code = 3
        except BaseException:
            os.write(write_end, traceback.format_exc().encode())
            code = 1
        os._exit(code)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as f:
        said = f.read().decode(errors="replace")  # until the child exits
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code == 0:
        return None
    return said or f"the process applying block {bucket.bucket} exited with code {code}"


def _apply(
    url: str,
    bucket: RollupBucket,
    turn,
    want,
    lag,
    parent_pid: int,
    writer_pid: int,
    health: _Health,
    retry: RetryPolicy,
    lock_wait_s: float,
) -> bool:
    """Merge and apply a block a slice at a time; False if the dataflow (or the writer) went away meanwhile."""
    from pypi_pulse.errors import UserError
    from pypi_pulse.sink.base import open_sink

    def gone() -> bool:
        return os.getppid() != writer_pid or not _alive(parent_pid)

    def check() -> None:
        if gone():
            raise _DataflowGone()

    def opened():
        try:
            return open_sink(url)
        except UserError as exc:  # the dataflow checked the URL at its start: now the server is down
            raise SinkUnavailable(str(exc)) from None

    outage = Outage(retry.log_every_s, on_change=lambda since: setattr(health.since, "value", since), quiet=True)

    def patient(fn):
        return patiently(fn, retry, outage, source="block_writer", on_failure=health.failed, between=check)

    if isinstance(bucket.counts, SealedBlock):
        bucket = RollupBucket(bucket.bucket, _merged(bucket.counts, lag), span=bucket.span)
    try:
        sink = patient(opened)
    except _DataflowGone:
        return False
    sink.set_lock_wait(lock_wait_s)
    if hasattr(sink, "SLICE_ROWS"):
        sink.SLICE_ROWS = SLICE_ROWS
    slices = sink.apply_in_slices(bucket)
    took = 0.0

    def step() -> bool:
        nonlocal slices, took
        t = time.perf_counter()
        with turn if turn is not None else nullcontext():
            try:
                done = next(slices, StopIteration) is StopIteration
            except Exception:
                slices = sink.apply_in_slices(bucket)  # afresh: the slices recorded as applied are skipped
                raise
        took = time.perf_counter() - t
        return done

    try:
        while True:
            while want.is_set():  # a window write is waiting for the lock
                time.sleep(0.001)
            if gone():
                return False
            if patient(step):
                return True
            time.sleep(took * (1.0 / _share(lag.value) - 1.0))
    except _DataflowGone:
        return False
    finally:
        sink.close()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
