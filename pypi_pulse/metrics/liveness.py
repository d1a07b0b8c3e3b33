"""Whether a long-running process's main loop still turns: what its `/healthz` reports.

A process can be up, with its metrics thread answering, while its main loop is stuck (a deadlock, a call that never
returns); an orchestrator should restart it then, and only then. Each loop beats its heartbeat every time round:
the dataflow each time Bytewax polls a partition (empty polls included, so an idle stream stays alive), the
producer each time it serves its Kafka client (also while it waits for a broker that is away: restarting it would
lose what it holds for that broker). Process start counts as the first beat.
"""

from __future__ import annotations

import time


class Heartbeat:
    def __init__(self, name: str):
        self.name = name
        self.last = time.monotonic()

    def beat(self) -> None:
        self.last = time.monotonic()

    def age(self) -> float:
        """Seconds since the loop last made progress."""
        return time.monotonic() - self.last


PRODUCER = Heartbeat("producer")
DATAFLOW = Heartbeat("dataflow")
