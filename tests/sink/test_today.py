"""Downloads today, the one definition (sink/today.py): the day's applied rollups plus the windows of the minutes
they do not cover yet, exact at the seam on both backends, when blocks are sealed again, on a backfilled day;
and which days the daily charts must mark as not complete."""

from __future__ import annotations

from live_numbers_testing import BLOCK, DAY, DAY0, scenario

from pypi_pulse.sink import queries
from pypi_pulse.sink.base import open_sink
from pypi_pulse.sink.model import WindowRow

SECONDS = 35 * 60  # 00:00-00:35: two blocks applied, fifteen minutes only in windows


def test_today_counts_every_download_once_where_rollups_end_and_windows_go_on(sink_url, tmp_path):
    sc = scenario(1, DAY0, SECONDS)
    yesterday = scenario(2, DAY0 - 300, 300)  # the end of the day before: not today's
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([yesterday.block(DAY0 - BLOCK)])
        db.write(yesterday.windows() + sc.windows(), None)
        before = queries.downloads_today(db)
        assert (before.downloads, before.from_rollups, before.rollups_through) == (
            sc.total(DAY0, DAY0 + SECONDS),
            0,
            None,
        )
        db.write_buckets([sc.block(DAY0), sc.block(DAY0 + BLOCK)])
        # a straggler rewrites a window of a minute not yet sealed: the figure follows it
        late = sc.events[DAY0 + SECONDS - 100] + [("pkg-00", False)] * 7
        sc.events[DAY0 + SECONDS - 100] = late
        db.write([sc.window(DAY0 + SECONDS - 100)], None)
        t = queries.downloads_today(db)
    truth = sc.total(DAY0, DAY0 + SECONDS)  # counted from the events: 35 minutes, mirrors included
    assert t.day == DAY
    assert t.downloads == truth
    assert t.from_rollups == sc.total(DAY0, DAY0 + 2 * BLOCK)
    assert t.from_windows == sc.total(DAY0 + 2 * BLOCK, DAY0 + SECONDS)
    assert t.rollups_through == DAY0 + 2 * BLOCK and not t.backfilled


def test_blocks_sealed_again_after_a_restart_are_counted_once(sink_url, tmp_path):
    sc = scenario(3, DAY0, SECONDS, projects=400)
    truth = sc.total(DAY0, DAY0 + SECONDS)
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write_buckets([sc.block(DAY0)])
        db.write(sc.windows(), None)
        assert queries.downloads_today(db).downloads == truth
        db.write_buckets([sc.block(DAY0), sc.block(DAY0 + BLOCK)])  # the first again, with the next one
        db.write_buckets([sc.block(DAY0 + BLOCK)])
        t = queries.downloads_today(db)
        assert (t.downloads, t.from_rollups) == (truth, sc.total(DAY0, DAY0 + 2 * BLOCK))
        assert db.history_covered(DAY) == [(DAY0, DAY0 + BLOCK), (DAY0 + BLOCK, DAY0 + 2 * BLOCK)]


def test_a_backfilled_day_is_the_backfills_figure(sink_url, tmp_path):
    sc = scenario(4, DAY0, 120)
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.backfill_day(DAY, [("pkg-00", "with_mirrors", None, 5000), ("pkg-01", "with_mirrors", None, 700)], "test")
        db.write(sc.windows(), None)  # the stream adds nothing to a day a backfill owns
        t = queries.downloads_today(db)
    assert (t.downloads, t.from_rollups, t.from_windows, t.backfilled) == (5700, 5700, 0, True)


def test_the_day_in_progress_and_yesterday_until_its_last_block_is_applied_are_partial(sink_url, tmp_path):
    yesterday = scenario(5, DAY0 - BLOCK, BLOCK)
    today = scenario(6, DAY0, 90)
    prev = "2026-11-20"
    with open_sink(sink_url, history=tmp_path / "history") as db:
        db.write(yesterday.windows() + today.windows(), None)
        assert queries.partial_days(db, [prev, DAY]) == [prev, DAY]
        db.write_buckets([yesterday.block(DAY0 - BLOCK)])
        assert queries.partial_days(db, [prev, DAY]) == [DAY]
        assert queries.partial_days(db, ["2026-11-19"]) == []  # nothing streamed that day


def test_no_window_no_today(sink_url, tmp_path):
    with open_sink(sink_url, history=tmp_path / "history") as db:
        assert queries.downloads_today(db) is None
        db.write([WindowRow(DAY0 + 5, 3, 1, {"US": 3}, [("a", 3)])], None)
        assert queries.downloads_today(db).downloads == 3
