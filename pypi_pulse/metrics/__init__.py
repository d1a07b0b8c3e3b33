"""Prometheus metrics for pypi-pulse.

Two kinds, served on `/metrics` in the Prometheus text format:

- `sink_collector`: what PyPI is doing, read from the sink at scrape time by `pypi-pulse metrics` (one exporter
  for any number of dataflow restarts, and the only place that sees the snapshot-consistent pipeline counters).
- `producer_metrics` / `dataflow_metrics`: live health of one running process, exposed on its `--metrics-port`.
"""
