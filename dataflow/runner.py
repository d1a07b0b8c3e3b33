"""Running the dataflow: in this process, or as one Bytewax cluster of several processes, with recovery when asked.

Bytewax's own cluster runtime does the work (`cli_main` with a process id and the members' addresses); the
clocks are keyed by shard, so they spread over every worker of every member. What this module adds is what the
runtime leaves to its caller: starting the members of a local cluster and stopping them together, handing the
stop offsets of a batch run to members that cannot read the parent's pipe, and one recovery store they share.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Optional

import structlog
from bytewax.recovery import RecoveryConfig
from bytewax.run import cli_main

from pypi_pulse.dataflow.early_members import Members
from pypi_pulse.dataflow.flow import FlowConfig, build_flow
from pypi_pulse.dataflow.membership import wait_resolvable
from pypi_pulse.dataflow.recovery_store import make_store, wait_for_store
from pypi_pulse.dataflow.source import STOP, StopOffsets
from pypi_pulse.errors import UserError
from pypi_pulse.metrics.liveness import DATAFLOW

log = structlog.get_logger(__name__)
SPILL_DIR = "spill"  # inside the recovery directory: deleted with it (dataflow/spill.py)
FAILED_MEMBER_GRACE_S = 30.0  # a member still waiting for a dead peer to connect never returns by itself


class ClusterError(UserError):
    """A member of the local cluster ended with a non-zero status; the others were stopped."""

    def __init__(self, message: str, exitcode: int):
        super().__init__(message)
        self.exitcode = exitcode


@dataclass(frozen=True)
class MetricsEndpoint:
    """Where the dataflow serves its metrics. The members 1.. a local cluster spawns share the machine, so member i
    serves them on `port + i`; a member of a cluster over several machines has the host to itself (a pod its own
    IP, which the probes and the ServiceMonitor reach on the one configured port) and serves them on `port`."""

    host: str
    port: int
    stale_after_s: float = 60.0


class StopOffsetsFile:
    """The stop offsets of a batch run, as every member reads them: a JSON file the parent renames into place
    once the producer has reported (`{"offsets": {partition: offset}}`), or `{"abort": reason}` when it failed,
    which ends this member's inputs. Picklable, so a spawned member gets it with its arguments."""

    def __init__(self, path: Path):
        self.path = path
        self.offsets: Optional[dict[int, int]] = None

    def __call__(self) -> Optional[dict[int, int]]:
        # runs inside Bytewax on every poll of a partition: one failed stat until the file exists, then cached
        if self.offsets is not None:
            return self.offsets
        try:
            data = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return None
        if "abort" in data:
            STOP.set()
            return None
        self.offsets = {int(p): int(o) for p, o in data["offsets"].items()}
        return self.offsets

    def write(self, offsets: Optional[dict[int, int]] = None, abort: Optional[str] = None) -> None:
        body = {"abort": abort} if abort is not None else {"offsets": {str(p): o for p, o in (offsets or {}).items()}}
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text(json.dumps(body))
        os.replace(tmp, self.path)  # a member never reads half a file


def check_cluster(processes: int, process_id: Optional[int], addresses: Optional[list[str]]) -> None:
    """The shapes Bytewax can run: one process, a local cluster of `processes`, or member `process_id` of the
    cluster at `addresses` (one per machine)."""
    if process_id is None and addresses is not None:
        raise UserError("--addresses needs --process-id: the index of this process among the addresses")
    if process_id is None:
        return
    if addresses is None:
        raise UserError('--process-id needs --addresses "HOST:PORT;HOST:PORT", one per process of the cluster')
    if processes > 1:
        raise UserError(
            "--processes starts a local cluster; with --process-id and --addresses each process is started "
            "by hand: pass one or the other"
        )
    if not 0 <= process_id < len(addresses):
        raise UserError(f"--process-id {process_id} is out of range: --addresses lists {len(addresses)} processes")


def prepare_recovery(
    recovery_dir: Path,
    fresh: bool,
    partitions: int = 1,
    create: bool = True,
    wait_s: float = 0.0,
    tick: Optional[Callable[[], None]] = None,
) -> RecoveryConfig:
    """The recovery store of this process's cluster (dataflow/recovery_store.py): made here on first use when
    `create` (a single process, the starter of a local cluster, member 0 of a cluster over several machines), else
    waited for up to `wait_s`. `fresh` discards state that no longer matches the topic."""
    if create:
        make_store(recovery_dir, partitions, fresh)
    else:
        wait_for_store(recovery_dir, wait_s, tick=tick)
    return RecoveryConfig(str(recovery_dir))


def run_dataflow(
    cfg: FlowConfig,
    *,
    workers: int = 1,
    processes: int = 1,
    process_id: Optional[int] = None,
    addresses: Optional[list[str]] = None,
    epoch_s: float = 2.0,
    recovery_dir: Optional[Path] = None,
    fresh_recovery: bool = False,
    stop_offsets: Optional[StopOffsets] = None,
    metrics: Optional[MetricsEndpoint] = None,
    cluster_wait_s: float = 300.0,
    cluster_stop_s: float = 15.0,
) -> None:
    """Run the dataflow until its inputs end. With `processes` > 1, a local cluster: members 1.. in spawned
    processes (their `stop_offsets` must be picklable, a `StopOffsetsFile`), member 0 here; `metrics`: where the
    spawned members serve theirs, on its port + their index (member 0's, and a lone process's, is the caller's).
    With `process_id` and `addresses`: that member only, which waits up to `cluster_wait_s` for its own address to
    resolve and, unless it is member 0, for member 0 to make the shared recovery store, and which exits
    `cluster_stop_s` after being told to stop if the cluster has not ended by then."""
    check_cluster(processes, process_id, addresses)
    members = len(addresses) if addresses else processes
    if process_id is not None and addresses is not None:
        wait_resolvable(addresses[process_id], cluster_wait_s, tick=DATAFLOW.beat)
    if recovery_dir is not None:
        prepare_recovery(
            recovery_dir, fresh_recovery, workers * members, not process_id, cluster_wait_s, tick=DATAFLOW.beat
        )
    log.info(
        "dataflow.start",
        topic=cfg.topic,
        partitions=cfg.n_partitions,
        sink=cfg.sink_url,
        shards=cfg.shards,
        workers=workers,
        processes=members,
        process_id=process_id,
        recovery=str(recovery_dir) if recovery_dir else None,
    )
    if processes > 1:
        _LocalCluster(cfg, workers, processes, epoch_s, recovery_dir, stop_offsets, metrics).run()
        return
    ended = threading.Event()
    if process_id is not None:
        watch = (process_id, members, cluster_stop_s, ended)
        threading.Thread(target=_exit_if_stopped_alone, args=watch, name="stop-watch", daemon=True).start()
    try:
        _run_member(cfg, workers, process_id, addresses, epoch_s, recovery_dir, stop_offsets)
    except BaseException as exc:
        if process_id is None or type(exc).__name__ != "PanicException":  # Bytewax's, a BaseException
            raise
        # how Bytewax ends a member once a peer is gone: no member can go on alone, and each is restarted (by
        # Kubernetes, systemd...) to form the cluster again
        log.error("dataflow.cluster_broken", process_id=process_id, panic=str(exc))
        raise ClusterError(
            f"dataflow member {process_id} of {members} stopped: the cluster broke down ({exc}), as it does when a "
            "member is gone; the members resume together from the last snapshot once all of them run again",
            1,
        ) from None
    finally:
        ended.set()


def _exit_if_stopped_alone(process_id: int, members: int, wait_s: float, ended: threading.Event) -> None:
    """A member that ended its inputs waits in Bytewax until every member has ended theirs; stopped alone (its pod
    evicted), it would wait until killed, while the others, missing its partitions, make no progress either."""
    STOP.wait()
    if ended.wait(wait_s):
        return
    log.error("dataflow.stopped_alone", process_id=process_id, waited_s=wait_s)
    sys.stderr.write(
        f"error: dataflow member {process_id} of {members} was stopped but the other members were not, so the "
        f"cluster could not end within {wait_s:g} s (cluster_stop_seconds); exiting: the others restart and "
        "resume with it from the last snapshot\n"
    )
    sys.stderr.flush()
    os._exit(2)


def _run_member(
    cfg: FlowConfig,
    workers: int,
    process_id: Optional[int],
    addresses: Optional[list[str]],
    epoch_s: float,
    recovery_dir: Optional[Path],
    stop_offsets: Optional[StopOffsets],
) -> None:
    flow = build_flow(
        cfg,
        stop_offsets,
        snapshots=recovery_dir is not None,
        spill_dir=recovery_dir / SPILL_DIR if recovery_dir else None,
    )
    cli_main(
        flow,
        workers_per_process=workers,
        process_id=process_id,
        addresses=addresses,
        epoch_interval=timedelta(seconds=epoch_s),
        recovery_config=RecoveryConfig(str(recovery_dir)) if recovery_dir else None,
    )


def _free_addresses(n: int) -> list[str]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [f"127.0.0.1:{s.getsockname()[1]}" for s in socks]
    finally:
        for s in socks:
            s.close()


def _log_setup() -> tuple[str, str]:
    """This process's log level and format (pypi_pulse/logs.py), for a spawned member to log as it does."""
    import logging

    level = logging.getLevelName(logging.getLogger().getEffectiveLevel()).lower()
    json_logs = any(isinstance(p, structlog.processors.JSONRenderer) for p in structlog.get_config()["processors"])
    return level, "json" if json_logs else "console"


def _member_child(
    cfg: FlowConfig,
    workers: int,
    process_id: int,
    addresses: list[str],
    epoch_s: float,
    recovery_dir: Optional[Path],
    stop_offsets: Optional[StopOffsets],
    metrics: Optional[MetricsEndpoint],
    log_setup: tuple[str, str],
    parent_pid: int,
) -> None:
    """A spawned member of a local cluster. Ctrl-C or SIGTERM ends its inputs, as in a single process; it exits
    when its parent is gone, since a member waiting for a dead peer to connect would wait for ever."""
    from pypi_pulse import logs

    logs.setup(*log_setup)
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: STOP.set())
    if metrics is not None:
        from pypi_pulse.metrics.endpoint import serve
        from pypi_pulse.metrics.liveness import DATAFLOW

        serve(metrics.host, metrics.port + process_id, liveness=DATAFLOW, stale_after_s=metrics.stale_after_s)

    def orphaned() -> None:
        while os.getppid() == parent_pid:
            time.sleep(0.5)
        log.error("dataflow.cluster_parent_gone", process_id=process_id)
        os._exit(1)

    threading.Thread(target=orphaned, name="parent-watch", daemon=True).start()
    _run_member(cfg, workers, process_id, addresses, epoch_s, recovery_dir, stop_offsets)
    # Ended cleanly: Bytewax has closed every input and output. Member 0 waits for this exit status before its
    # own exit, so the interpreter's teardown of the member's heap (some 0.15 s) is skipped, output flushed first.
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


class _LocalCluster:
    """Members 1.. of a local cluster in spawned processes, member 0 in this one, stopped together: a member that
    fails takes the cluster down (Bytewax's remaining members end with a panic once a peer is gone), and Ctrl-C
    or SIGTERM here reaches every member."""

    def __init__(self, cfg, workers, processes, epoch_s, recovery_dir, stop_offsets, metrics):
        self.processes = processes
        if metrics is not None:  # a member's port taken is said now, in one line, not once the cluster has started
            from pypi_pulse.metrics.endpoint import check_free

            for i in range(1, processes):
                check_free(metrics.host, metrics.port + i, f"dataflow process {i} of a local cluster of {processes}")
        self.addresses = _free_addresses(processes)
        self.member_args = (cfg, workers, epoch_s, recovery_dir, stop_offsets)
        parts = [
            (
                (cfg, workers, i, self.addresses, epoch_s, recovery_dir, stop_offsets, metrics),
                {"log_setup": _log_setup(), "parent_pid": os.getpid()},
            )
            for i in range(1, processes)
        ]
        self.members = Members(parts, _member_child)
        self.children = self.members.processes
        self.failed: Optional[tuple[int, int]] = None  # (process id, exit status) of the first member that failed
        self.done = threading.Event()

    def run(self) -> None:
        self.members.start()
        watcher = threading.Thread(target=self._watch, name="cluster-watch", daemon=True)
        watcher.start()
        cfg, workers, epoch_s, recovery_dir, stop_offsets = self.member_args
        try:
            _run_member(cfg, workers, 0, self.addresses, epoch_s, recovery_dir, stop_offsets)
        except BaseException as exc:  # Bytewax's PanicException is a BaseException
            self.done.set()
            if type(exc).__name__ == "PanicException":  # how Bytewax ends once a peer is gone: which one, and how?
                self._note_failed(wait_s=5.0)
            self._stop_children(wait_s=10.0)
            if self.failed is not None:
                raise self._error() from exc
            raise
        self.done.set()
        for child in self.children:
            child.join(30)
        self._stop_children(wait_s=5.0)
        for i, child in enumerate(self.children, start=1):
            if child.exitcode != 0 and self.failed is None:
                self.failed = (i, child.exitcode if child.exitcode is not None else -1)
        if self.failed is not None:
            raise self._error()

    def _watch(self) -> None:
        """Forwards a stop to every member, and notices a member that failed."""
        forwarded = False
        failed_at: Optional[float] = None
        while not self.done.wait(0.1):
            if STOP.is_set() and not forwarded:
                forwarded = True
                for child in self.children:
                    if child.is_alive() and child.pid is not None:
                        os.kill(child.pid, signal.SIGTERM)
            for i, child in enumerate(self.children, start=1):
                if self.failed is None and child.exitcode not in (None, 0):
                    self.failed = (i, child.exitcode)
                    log.error("dataflow.cluster_member_failed", process_id=i, exitcode=child.exitcode)
                    failed_at = time.monotonic()
                    for other in self.children:  # member 0 ends by itself: Bytewax panics once a peer is gone
                        if other.is_alive():
                            other.terminate()
            if failed_at is not None and time.monotonic() - failed_at > FAILED_MEMBER_GRACE_S:
                # member 0 is still waiting for the dead member to connect, which Bytewax never gives up on
                self._stop_children(wait_s=5.0)
                log.error("dataflow.cluster_stopped", reason=str(self._error()))
                os._exit(1)

    def _note_failed(self, wait_s: float) -> None:
        deadline = time.monotonic() + wait_s
        while self.failed is None and time.monotonic() < deadline:
            for i, child in enumerate(self.children, start=1):
                if child.exitcode not in (None, 0):
                    self.failed = (i, child.exitcode)
                    break
            time.sleep(0.05)

    def _stop_children(self, wait_s: float) -> None:
        for child in self.children:
            if child.is_alive():
                child.terminate()
        deadline = time.monotonic() + wait_s
        for child in self.children:
            child.join(max(0.0, deadline - time.monotonic()))
            if child.is_alive():
                child.kill()
                child.join(5)

    def _error(self) -> ClusterError:
        assert self.failed is not None
        i, code = self.failed
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"status {code}"
        return ClusterError(
            f"dataflow process {i} of {self.processes} exited with {how}; the cluster was stopped", code
        )
