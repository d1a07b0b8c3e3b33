"""What PyPI is doing, as Prometheus metrics read from the sink when Prometheus scrapes.

Per-second figures are the mean over the newest `span_s` seconds of closed windows (a second without a window
counts as zero downloads), so a Grafana panel sampled every 15 s is not at the mercy of one noisy second. The top
packages are those of the newest closed window: the sink keeps each window's top 10, so that set is exact and
its labels are bounded by 10 at any time. Beside them, the top 10 of the newest 60 seconds (sink/live_top.py): the
downloads the per-second top 10s prove, with the most each can be and whether the ranking is exact. Downloads
today is `queries.downloads_today`, the one definition the dashboard and the API use. Reads are cached for
`cache_s` so that several scrapers cost one read.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Optional

import structlog
from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from pypi_pulse import countries
from pypi_pulse.metrics.reasons import REASONS, reason_label
from pypi_pulse.sink import queries, recent
from pypi_pulse.sink.base import Sink, open_sink
from pypi_pulse.sink.live_top import top_of
from pypi_pulse.sink.retry import one_line
from pypi_pulse.sink.trending import Trending, TrendingOptions

log = structlog.get_logger(__name__)

PIPELINE_COUNTERS = {
    "consumed": "Events the dataflow consumed from Kafka.",
    "counted": "Events counted in a window.",
    "late": "Events that arrived after their window had been emitted (the window was re-emitted).",
    "dropped": "Events older than the lateness horizon, not counted.",
}


class SinkCollector(Collector):
    def __init__(
        self, sink_url: str, *, span_s: int = 10, cache_s: float = 1.0, opener: Callable[..., Sink] = open_sink
    ):
        self.sink_url = sink_url
        self._opener = opener  # sink.read_pool.ReadPool.opener: PostgreSQL reads from a pool
        self.span_s = max(int(span_s), 1)
        self.cache_s = cache_s
        self._db: Optional[Sink] = None
        self._lock = threading.Lock()
        self._cached: list = []
        self._cached_at = -float("inf")
        self._unavailable_since = 0.0  # wall time of the first failed read of the current outage
        self.trending_options = TrendingOptions.current()
        self._trending_at: Optional[int] = None  # newest block end the cached trending rows were computed at
        self._trending_rows: Optional[Trending] = None

    def collect(self):
        with self._lock:
            if time.monotonic() - self._cached_at >= self.cache_s:
                self._cached = self._read()
                self._cached_at = time.monotonic()
            return list(self._cached)

    def describe(self):
        return []  # metric names depend on the data; registering must not read the sink

    # ---------------------------------------------------------------------------------------------------------
    def _read(self) -> list:
        t0 = time.perf_counter()
        up = GaugeMetricFamily("pypi_pulse_sink_up", "1 if the last read of the sink succeeded.")
        down = GaugeMetricFamily(
            "pypi_pulse_sink_unavailable_since_seconds",
            "Wall-clock time since which the exporter's reads of the sink fail; 0 while they succeed.",
        )
        took = GaugeMetricFamily("pypi_pulse_sink_read_duration_seconds", "Time the exporter took to read the sink.")
        try:
            if self._db is None:
                self._db = self._opener(self.sink_url, readonly=True)
            families = self._families(self._db)
            up.add_metric([], 1)
            self._unavailable_since = 0.0
        except Exception as exc:  # report the failure as a metric, and reconnect next time
            if not self._unavailable_since:
                self._unavailable_since = time.time()
                log.warning("metrics.sink_read_failed", sink=self.sink_url, error=one_line(exc))
            families = []
            up.add_metric([], 0)
            if self._db is not None:
                try:
                    self._db.close()
                except Exception:
                    pass
                self._db = None
        took.add_metric([], time.perf_counter() - t0)
        down.add_metric([], self._unavailable_since)
        return [up, down, took, *families]

    def _families(self, db: Sink) -> list:
        out: list[Metric] = []
        rate = GaugeMetricFamily(
            "pypi_pulse_downloads_per_second",
            f"Downloads per second, mean over the newest {self.span_s} s of closed windows.",
        )
        unique = GaugeMetricFamily(
            "pypi_pulse_unique_packages_per_second",
            f"Distinct packages downloaded in a second, mean over the newest {self.span_s} s.",
        )
        by_country = GaugeMetricFamily(
            "pypi_pulse_country_downloads_per_second",
            f"Downloads per second by country (ISO 3166-1; ZZ unknown), mean over the newest {self.span_s} s.",
            labels=["country", "country_alpha3", "country_name"],
        )
        top = GaugeMetricFamily(
            "pypi_pulse_top_package_downloads_per_second",
            "Downloads of the top packages in the newest closed 1-second window.",
            labels=["rank", "project"],
        )
        today = GaugeMetricFamily(
            "pypi_pulse_downloads_today",
            "Downloads (mirrors included) on the UTC day of the newest window so far: the day's applied daily "
            "rollups plus the windows of the minutes they do not cover yet, each download counted once.",
        )
        minute = GaugeMetricFamily(
            "pypi_pulse_top_package_downloads_last_minute",
            "Top 10 packages of the newest 60 s of closed windows: downloads proven by the per-second top 10s "
            "(a lower bound where pypi_pulse_top_package_downloads_last_minute_max is higher).",
            labels=["project"],
        )
        minute_max = GaugeMetricFamily(
            "pypi_pulse_top_package_downloads_last_minute_max",
            "The most each of those packages can have had in those 60 s.",
            labels=["project"],
        )
        minute_exact = GaugeMetricFamily(
            "pypi_pulse_top_packages_last_minute_exact",
            "1 if the last-minute top 10 and its figures are exact, 0 if some figure is only a lower bound.",
        )
        newest = GaugeMetricFamily(
            "pypi_pulse_window_last_start_timestamp_seconds", "Event-time start of the newest closed window."
        )
        written = GaugeMetricFamily(
            "pypi_pulse_window_last_written_timestamp_seconds",
            "Wall-clock time the newest closed window was last written.",
        )
        delay = GaugeMetricFamily(
            "pypi_pulse_window_close_delay_seconds", "Wall clock at write minus end of the newest closed window."
        )
        head = db.query("SELECT start, written_at FROM windows ORDER BY start DESC LIMIT 1")
        if head:
            last, written_at = int(head[0][0]), float(head[0][1])
            rows = db.windows(last - self.span_s + 1, last + 1)
            downloads = sum(w.downloads for w in rows)
            rate.add_metric([], downloads / self.span_s)
            unique.add_metric([], sum(w.unique_packages for w in rows) / self.span_s)
            per_country: dict[str, int] = {}
            for w in rows:
                for cc, n in w.countries.items():
                    per_country[cc] = per_country.get(cc, 0) + n
            for cc, n in sorted(per_country.items()):
                by_country.add_metric([cc, countries.alpha3(cc) or "", countries.name(cc)], n / self.span_s)
            for rank, (project, n) in enumerate(rows[-1].top if rows and rows[-1].start == last else [], start=1):
                top.add_metric([str(rank), project], n)
            t = top_of(db.windows(last - 59, last + 1), last - 59, last + 1)
            for e in t.entries:
                minute.add_metric([e.project], e.downloads)
                minute_max.add_metric([e.project], e.downloads_max)
            minute_exact.add_metric([], 1 if t.exact else 0)
            so_far = queries.downloads_today(db)
            today.add_metric([], so_far.downloads if so_far is not None else 0)
            newest.add_metric([], last)
            written.add_metric([], written_at)
            delay.add_metric([], written_at - (last + 1))
        out += [rate, unique, by_country, top, today, minute, minute_max, minute_exact, newest, written, delay]
        out += self._pipeline(db)
        out += self._trending(db)
        return out

    def _trending(self, db: Sink) -> list:
        """The top trending projects of the last hour (sink/trending.py), recomputed when a new block is sealed."""
        newest = recent.newest_block_end(db)
        if newest is None:
            return []
        t = self._trending_rows
        if t is None or self._trending_at != newest:
            t = self._trending_rows = self.trending_options.compute(db, 1, self.trending_options.metric_top)
            self._trending_at = newest
        ratio = GaugeMetricFamily(
            "pypi_pulse_trending_ratio",
            "Downloads over the last whole hour the sealed rollups reach, divided by the "
            "project's usual level for that hour of the week (top trending projects).",
            labels=["project"],
        )
        downloads = GaugeMetricFamily(
            "pypi_pulse_trending_downloads",
            "Downloads of the top trending projects over that hour.",
            labels=["project"],
        )
        end = GaugeMetricFamily(
            "pypi_pulse_trending_window_end_timestamp_seconds", "End of the hour the trending figures measure."
        )
        for r in t.rows:
            ratio.add_metric([r["project"]], r["ratio"])
            downloads.add_metric([r["project"]], r["downloads"])
        if t.end is not None:
            end.add_metric([], t.end)
        return [ratio, downloads, end]

    def _pipeline(self, db: Sink) -> list:
        stats = db.stats()
        if stats is None:
            return []
        c = stats.counters
        out: list[Metric] = []
        for name, help_ in PIPELINE_COUNTERS.items():
            f = CounterMetricFamily(f"pypi_pulse_pipeline_events_{name}", help_)
            f.add_metric([], c.get(name, 0))
            out.append(f)
        dead = CounterMetricFamily(
            "pypi_pulse_pipeline_events_dead_lettered",
            "Events the dataflow sent to the dead-letter topic.",
            labels=["reason"],
        )
        by_reason: dict[str, int] = dict.fromkeys(REASONS, 0)
        for k, n in c.items():
            if k.startswith("dead_lettered."):
                label = k.split(".", 1)[1]
                by_reason[label] = by_reason.get(label, 0) + n
        for label, n in sorted(by_reason.items()):
            dead.add_metric([label if label.isidentifier() else reason_label(label)], n)
        out.append(dead)
        offsets = GaugeMetricFamily(
            "pypi_pulse_pipeline_partition_next_offset",
            "Next offset to read per partition, as of the dataflow's last stored counters.",
            labels=["partition"],
        )
        for p, off in sorted(stats.offsets.items()):
            offsets.add_metric([str(p)], off)
        out.append(offsets)
        if stats.watermark is not None:
            wm = GaugeMetricFamily(
                "pypi_pulse_pipeline_watermark_timestamp_seconds",
                "Event-time watermark: every earlier second has had its early result.",
            )
            wm.add_metric([], stats.watermark)
            out.append(wm)
        if stats.updated_at is not None:
            upd = GaugeMetricFamily(
                "pypi_pulse_pipeline_stats_updated_timestamp_seconds",
                "Wall-clock time the dataflow last stored its counters.",
            )
            upd.add_metric([], stats.updated_at)
            out.append(upd)
        return out

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None


def build_registry(
    sink_url: str, *, span_s: int = 10, cache_s: float = 1.0, opener: Callable[..., Sink] = open_sink
) -> tuple[CollectorRegistry, SinkCollector]:
    """A registry of the sink metrics plus this exporter's own process, Python and GC metrics."""
    registry = CollectorRegistry()
    collector = SinkCollector(sink_url, span_s=span_s, cache_s=cache_s, opener=opener)
    registry.register(collector)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry, collector
