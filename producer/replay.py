"""Driving a source into Kafka: pacing, progress, stopping and the final summary."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

import structlog
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from pypi_pulse.producer.files import count_lines, event_time, read_records, restamp
from pypi_pulse.producer.publisher import Publisher, Summary
from pypi_pulse.producer.synthetic import SyntheticSource, stream

log = structlog.get_logger(__name__)


class Pacer:
    """Sleeps so that events leave at their own pace divided by `speed` (None: as fast as possible)."""

    def __init__(self, speed: Optional[float]):
        self.speed = speed
        self.first_event: Optional[float] = None
        self.first_wall = 0.0

    def wait(self, event_ts: Optional[float], stop: threading.Event,
             before_sleep: Optional[Callable[[], None]] = None) -> None:
        if self.speed is None or event_ts is None:
            return
        if self.first_event is None:
            self.first_event, self.first_wall = event_ts, time.monotonic()
            return
        delay = self.first_wall + (event_ts - self.first_event) / self.speed - time.monotonic()
        if delay > 0.002:
            if before_sleep is not None:
                before_sleep()
            stop.wait(delay)


def replay_file(pub: Publisher, path: Path, speed: Optional[float], do_restamp: bool, stop: threading.Event,
                show_progress: bool = True, pack: int = 1) -> Summary:
    """Replay an export into Kafka. With `pack` > 1 up to that many events share a message (PACK_HEADER); a paced
    replay sends what it holds before it sleeps, so packing never delays an event past its time."""
    pacer = Pacer(speed)
    need_time = speed is not None or do_restamp
    shift: Optional[float] = None
    total = count_lines(path) if show_progress else None
    progress = Progress(TextColumn("[bold]replay[/] {task.description}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} ev/s"), TimeRemainingColumn(), disable=not show_progress,
                        transient=False)
    s = pub.summary
    held: list[bytes] = []

    def send_held() -> None:
        if held:
            pub.send_packed(held, pack)
            held.clear()

    started = time.monotonic()
    with progress:
        task = progress.add_task(path.name, total=total, rate="-")
        for i, rec in enumerate(read_records(path, keys=pack == 1)):
            if stop.is_set():
                break
            s.read += 1
            if rec.error is not None:
                pub.dead_letter(rec.value, rec.error)
                continue
            value = rec.value
            if need_time:
                ts = event_time(value)
                if do_restamp and ts is not None:
                    if shift is None:
                        shift = time.time() - ts
                    value = restamp(value, shift)
                    ts += shift
                pacer.wait(ts, stop, before_sleep=send_held)
            if pack == 1:
                pub.send(value, rec.key)
            else:
                held.append(value)
                if len(held) >= 50 * pack:
                    send_held()
            if i % 5000 == 0:
                pub.poll()
                el = time.monotonic() - started
                progress.update(task, completed=s.read, rate=f"{s.read / el:,.0f}" if el > 0 else "-")
        send_held()
        pub.flush()
        progress.update(task, completed=s.read)
    return s


def run_synthetic(pub: Publisher, rate: float, seed: Optional[int], stop: threading.Event,
                  count: Optional[int] = None, duration: Optional[float] = None,
                  on_tick: Optional[Callable[[Summary], None]] = None, pack: int = 1) -> Summary:
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
