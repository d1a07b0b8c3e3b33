"""A live dataflow with recovery, SIGKILLed again and again while it streams and seals rollup blocks, ends exact.

Black-box: the dataflow runs as `pypi-pulse dataflow` (the command operators run), the kills land wherever the
process happens to be (reading, writing windows, sealing or handing over a block), and the result is read from
the sink and compared with windows and daily rollups computed here from the events sent. The contract it guards:
a crash neither loses an event nor counts one twice, in the per-second windows or in the daily history.
"""

from __future__ import annotations

from datetime import UTC, datetime

from dataflow_testing import LiveRun, assert_exact, crash, spread_events, wait_for_progress

T0 = datetime(2026, 11, 20, 10, 0, tzinfo=UTC).timestamp()
SPAN_S = 35 * 60  # three whole 10-minute rollup blocks seal while the dataflow streams
N = 120_000
CHUNKS = 60  # the events arrive as a live stream does, a chunk every FEED_EVERY_S, so the kills land mid-stream
FEED_EVERY_S = 0.5
KILL_AT = (0.2, 0.45, 0.7)  # fractions of the events consumed when each SIGKILL lands


def test_a_dataflow_killed_three_times_mid_stream_ends_with_exact_windows_and_history(tmp_path, broker, topic):
    events = spread_events(2026, T0, SPAN_S, N)
    with LiveRun(tmp_path, broker.bootstrap, topic, events, CHUNKS, FEED_EVERY_S) as run:
        for fraction in KILL_AT:
            flow = run.start()
            wait_for_progress(flow, run.sink, max(int(N * fraction), run.consumed() + 1))
            crash(flow)
        assert run.consumed() < N, "the last kill came after everything was consumed: it proves nothing"
        run.feed.join()

        final = run.start("--until-drained")
        assert final.exit_code(600, "the stream ended") == 0, final.tail()

    assert_exact(run.sink, events)
    assert "Traceback" not in run.log.read_text()
