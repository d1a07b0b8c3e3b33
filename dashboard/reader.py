"""One read-only sink connection shared by every request, opened lazily and reopened after a failure.

The dashboard starts before the dataflow has created the sink (`pypi-pulse up` starts them together), so a missing
sink is an empty state ("no data yet"), not an error. Requests share the connection under a lock; the caches in
front of it keep the number of queries independent of the number of viewers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Optional

import structlog

from pypi_pulse.errors import UserError
from pypi_pulse.sink.base import Sink, open_sink
from pypi_pulse.sink.retry import one_line

log = structlog.get_logger("pypi_pulse.dashboard.reader")


class NoData(Exception):
    """The sink cannot be read yet; the message says what to do."""


class SinkReader:
    def __init__(self, url: str, opener: Callable[..., Sink] = open_sink):
        self.url = url
        self._opener = opener
        self._sink: Optional[Sink] = None
        self._lock = threading.RLock()

    @contextmanager
    def use(self) -> Iterator[Sink]:
        """The shared sink, exclusively for the duration of the block; raises NoData if it cannot be opened."""
        with self._lock:
            if self._sink is None:
                try:
                    self._sink = self._opener(self.url, readonly=True)
                except UserError as exc:
                    raise NoData(str(exc)) from None
            try:
                yield self._sink
            except NoData:
                raise
            except Exception as exc:
                # a broken connection (database restarted, file replaced): reopen on the next request
                log.warning("sink read failed; reopening", url=self.url, error=one_line(exc))
                self.close()
                raise

    def close(self) -> None:
        with self._lock:
            if self._sink is not None:
                try:
                    self._sink.close()
                except Exception:
                    pass
                self._sink = None
