"""Driving a source into Kafka: pacing, progress, stopping and the final summary."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Optional, Union

import structlog
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pypi_pulse.producer.files import Record, count_lines, event_time, input_damage, key_of, read_records, restamp
from pypi_pulse.producer.ordering import time_ordered_lines
from pypi_pulse.producer.publisher import Publisher, Summary
from pypi_pulse.producer.synthetic import SyntheticSource, stream

log = structlog.get_logger(__name__)


class Pacer:
    """Sleeps so that events leave at their own pace divided by `speed` (None: as fast as possible).

    A paced replay spends most of its time here, so the wait serves the publisher (`serve(timeout)`: delivery
    reports, and Delivery's watch that notices a broker gone or back): otherwise acknowledgements would be counted
    only every few thousand events, and a restarted broker noticed only at the end of the file."""

    SERVE_SLICE_S = 0.1

    def __init__(self, speed: Optional[float]):
        self.speed = speed
        self.first_event: Optional[float] = None
        self.first_wall = 0.0

    def wait(
        self,
        event_ts: Optional[float],
        stop: threading.Event,
        before_sleep: Optional[Callable[[], None]] = None,
        serve: Optional[Callable[[float], None]] = None,
    ) -> None:
        if self.speed is None or event_ts is None:
            return
        if self.first_event is None:
            self.first_event, self.first_wall = event_ts, time.monotonic()
            return
        due = self.first_wall + (event_ts - self.first_event) / self.speed
        if due - time.monotonic() > 0.002:
            if before_sleep is not None:
                before_sleep()
            while not stop.is_set():
                left = due - time.monotonic()
                if left <= 0:
                    break
                if serve is None:
                    stop.wait(left)
                else:
                    serve(min(left, self.SERVE_SLICE_S))


class Export:
    """An export opened for replay, in the lists of (values, keys) it will be sent in. In time order the whole
    file is read and sorted before its first event can go; `prime` does that now, so that batch mode sorts while
    the broker starts. Rows that cannot be rebuilt wait in `bad` until there is a publisher to dead-letter them."""

    def __init__(
        self,
        path: Path,
        *,
        order: str = "time",
        keys: bool = True,
        sort_budget: int = 1 << 30,
        spill_dir: Optional[Path] = None,
    ):
        self.path = path
        self.bad: list[Record] = []
        if order == "file":
            self._chunks = _file_order_chunks(path, keys, self.bad.append)
        else:
            self._chunks = (
                (lines, None) for lines in time_ordered_lines(path, sort_budget, spill_dir, on_bad=self.bad.append)
            )
        self._first: Optional[tuple] = None

    def prime(self) -> Export:
        if self._first is None:
            t = time.perf_counter()
            self._first = next(self._chunks, ([], None))
            log.info("replay.ready", file=self.path.name, seconds=round(time.perf_counter() - t, 3))
        return self

    def __iter__(self):
        self.prime()
        yield self._first
        yield from self._chunks


def replay_file(
    pub: Publisher,
    source: Union[Path, Export],
    speed: Optional[float],
    do_restamp: bool,
    stop: threading.Event,
    show_progress: bool = True,
    pack: int = 1,
    order: str = "time",
    sort_budget: int = 1 << 30,
    spill_dir: Optional[Path] = None,
) -> Summary:
    """Replay an export into Kafka, in event-time order unless `order="file"` (producer/ordering.py says why).
    With `pack` > 1 up to that many events share a message (PACK_HEADER); a paced replay sends what it holds
    before it sleeps, so packing never delays an event past its time."""
    export = (
        source
        if isinstance(source, Export)
        else Export(source, order=order, keys=pack == 1, sort_budget=sort_budget, spill_dir=spill_dir)
    )
    path = export.path
    pacer = Pacer(speed)
    need_time = speed is not None or do_restamp
    shift: Optional[float] = None
    total = count_lines(path) if show_progress else None
    progress = Progress(
        TextColumn("[bold]replay[/] {task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} ev/s"),
        TimeRemainingColumn(),
        disable=not show_progress,
        transient=False,
    )
    s = pub.summary
    held: list[bytes] = []

    def send_held() -> None:
        if held:
            pub.send_packed(held, pack)
            held.clear()

    def dead_letters() -> None:
        for rec in export.bad:
            assert rec.error is not None  # what the export sets aside carries its reason
            s.read += 1
            pub.dead_letter(rec.value, rec.error)
        export.bad.clear()

    started = time.monotonic()
    with progress:
        task = progress.add_task(path.name, total=total, rate="-")
        for values, keys in export:
            dead_letters()
            if stop.is_set():
                break
            if pack > 1 and not need_time:  # a replay at full speed: whole lists, no per-event work here
                s.read += len(values)
                pub.send_packed(values, pack)
            else:
                for i, value in enumerate(values):
                    if stop.is_set():
                        break
                    s.read += 1
                    if need_time:
                        ts = event_time(value)
                        if do_restamp and ts is not None:
                            if shift is None:
                                shift = time.time() - ts
                            value = restamp(value, shift)
                            ts += shift
                        pacer.wait(ts, stop, before_sleep=send_held, serve=pub.wait)
                    if pack == 1:
                        pub.send(value, keys[i] if keys is not None else key_of(value))
                    else:
                        held.append(value)
                        if len(held) >= 50 * pack:
                            send_held()
                    if s.read % 5000 == 0:
                        pub.poll()
                        _show(progress, task, s.read, started)
            pub.poll()
            _show(progress, task, s.read, started)
        dead_letters()
        send_held()
        pub.flush()
        progress.update(task, completed=s.read)
    s.input_error = input_damage(path)
    return s


def _show(progress: Progress, task, done: int, started: float) -> None:
    el = time.monotonic() - started
    progress.update(task, completed=done, rate=f"{done / el:,.0f}" if el > 0 else "-")


def _file_order_chunks(path: Path, keys: bool, on_bad: Callable[[Record], None], size: int = 5000):
    """The export as it is, in lists of (values, keys): what `--order file` replays."""
    values: list[bytes] = []
    kept: list[Optional[bytes]] = []
    for rec in read_records(path, keys=keys):
        if rec.error is not None:
            on_bad(rec)
            continue
        values.append(rec.value)
        kept.append(rec.key)
        if len(values) >= size:
            yield values, kept
            values, kept = [], []
    if values:
        yield values, kept


def run_synthetic(
    pub: Publisher,
    rate: float,
    seed: Optional[int],
    stop: threading.Event,
    count: Optional[int] = None,
    duration: Optional[float] = None,
    on_tick: Optional[Callable[[Summary], None]] = None,
    pack: int = 1,
) -> Summary:
    """Live synthetic traffic until stopped (or `count` events / `duration` seconds, for scripts and tests)."""
    src = SyntheticSource(seed)
    s = pub.summary
    deadline = None if duration is None else time.monotonic() + duration
    for batch in stream(src, rate):
        if count is not None and s.read + len(batch) > count:
            batch = batch[: count - s.read]
        s.read += len(batch)
        if pack == 1:
            pub.send_many(batch)
        else:
            pub.send_packed([value for value, _key in batch], pack)
        if on_tick:
            on_tick(s)
        if stop.is_set() or (count is not None and s.read >= count) or (deadline and time.monotonic() >= deadline):
            break
    pub.flush()
    return s
