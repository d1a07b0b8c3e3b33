"""A live dataflow with recovery, SIGKILLed again and again while it streams and seals rollup blocks, ends exact.

Black-box: the dataflow runs as `pypi-pulse dataflow` (the command operators run), the kills land wherever the
process happens to be (reading, writing windows, sealing or handing over a block), and the result is read from
the sink and compared with windows and daily rollups computed here from the events sent. The contract it guards:
a crash neither loses an event nor counts one twice, in the per-second windows or in the daily history.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dataflow_testing import LiveFeed, assert_exact, consumed, crash, spread_events, start_dataflow, wait_for_progress

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
SPAN_S = 35 * 60  # three whole 10-minute rollup blocks seal while the dataflow streams
N = 120_000
CHUNKS = 60  # the events arrive as a live stream does, a chunk every FEED_EVERY_S, so the kills land mid-stream
FEED_EVERY_S = 0.5
KILL_AT = (0.2, 0.45, 0.7)  # fractions of the events consumed when each SIGKILL lands


def test_a_dataflow_killed_three_times_mid_stream_ends_with_exact_windows_and_history(tmp_path, broker, topic):
    events = spread_events(2026, T0, SPAN_S, N)
    feed = LiveFeed(broker.bootstrap, topic, events, CHUNKS, FEED_EVERY_S)
    sink = f"sqlite:///{tmp_path / 'kills.db'}"
    data_dir = tmp_path / "data"
    log = tmp_path / "dataflow.log"

    started = []
    try:
        for fraction in KILL_AT:
            flow = start_dataflow(broker.bootstrap, topic, sink, data_dir, log)
            started.append(flow)
            wait_for_progress(flow, sink, max(int(N * fraction), consumed(sink) + 1))
            crash(flow)
        assert consumed(sink) < N, "the last kill came after everything was consumed: it proves nothing"
        feed.join()

        final = start_dataflow(broker.bootstrap, topic, sink, data_dir, log, "--until-drained")
        started.append(final)
        assert final.exit_code(600, "the stream ended") == 0, final.tail()
    finally:
        for flow in started:
            flow.reap()

    assert_exact(sink, events)
    assert "Traceback" not in log.read_text()
