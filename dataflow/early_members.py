"""The members 1.. of a local cluster, started before this process has imported the dataflow.

A spawned member is a new interpreter: it imports Bytewax, Arrow, numpy, Kafka's client and the dataflow (about half
a second on the 2-core machine) before it can join, and member 0 waits for it, idle, since Bytewax forms the
cluster before any input is read. Started when the command knows its shape, before its own imports of the
dataflow, a member imports on the other core meanwhile and then waits for its part (the cluster's addresses, the
flow's settings), which `_LocalCluster` sends it once it has them. This module imports nothing heavy, so that the
start happens early.

A member that was started but is never given its part (the command failed before the cluster ran, or its shape
changed) ends by itself: its pipe ends with its parent, and the daemon flag ends it with the parent's exit.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any, Optional

_waiting: Optional[tuple[int, list[tuple[Any, Connection]]]] = None  # (processes, [(process, pipe)]) not yet used


def start_early(processes: int) -> None:
    """Spawn members 1 .. processes-1 of a local cluster now; `_LocalCluster` takes them (`take`)."""
    global _waiting
    if processes <= 1 or _waiting is not None:
        return
    ctx = multiprocessing.get_context("spawn")  # a fork would copy this process's threads and Kafka clients
    members = []
    for i in range(1, processes):
        reader, writer = ctx.Pipe(duplex=False)
        child = ctx.Process(target=_await_part, args=(reader, os.getpid()), name=f"dataflow-{i}", daemon=True)
        child.start()
        reader.close()
        members.append((child, writer))
    _waiting = (processes, members)


def take(processes: int) -> Optional[list[tuple[Any, Connection]]]:
    """The members started early for a cluster of `processes`, each with the pipe its part goes down; None when
    there are none (they are then spawned as the cluster starts). Members started for another shape are ended."""
    global _waiting
    if _waiting is None:
        return None
    started, members = _waiting
    _waiting = None
    if started == processes:
        return members
    for child, pipe in members:
        pipe.close()
        child.terminate()
        child.join(5)
    return None


def _await_part(pipe: Connection, parent_pid: int) -> None:
    """A member started early: the dataflow imported, then its part awaited. A Ctrl-C (it reaches the whole process
    group) before the part arrives is kept and given to the member's inputs once it runs; SIGTERM, how a parent
    ends members it will not use, ends it at once."""
    stopped: list[int] = []
    signal.signal(signal.SIGINT, lambda signum, frame: stopped.append(signum))
    from pypi_pulse.dataflow import runner
    from pypi_pulse.dataflow.source import STOP

    try:
        args, kwargs = pipe.recv()
    except EOFError:  # the parent ended, or ended this member, before the cluster ran
        return
    finally:
        pipe.close()
    if os.getppid() != parent_pid:
        return
    if stopped:
        STOP.set()
    runner._member_child(*args, **kwargs)


class Members:
    """Members 1.. of a local cluster, each given its part (`target`'s arguments): those started early get theirs
    down their pipes, others are spawned with theirs."""

    def __init__(self, parts: list[tuple[tuple, dict]], target: Callable[..., None]):
        self.parts = parts
        early = take(len(parts) + 1)
        self.pipes = [pipe for _child, pipe in early] if early else []
        if early:
            self.processes = [child for child, _pipe in early]
        else:
            ctx = multiprocessing.get_context("spawn")  # a fork would copy this process's threads and Kafka clients
            self.processes = [
                ctx.Process(target=target, args=args, kwargs=kwargs, name=f"dataflow-{i}", daemon=True)
                for i, (args, kwargs) in enumerate(parts, start=1)
            ]

    def start(self) -> None:
        if not self.pipes:
            for child in self.processes:
                child.start()
            return
        for pipe, part in zip(self.pipes, self.parts):
            try:
                pipe.send(part)
            except OSError:  # the member is gone: the cluster's watch reports how it ended
                pass
            pipe.close()
