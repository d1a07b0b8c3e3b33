"""Schema migrations, shared by SQLite and PostgreSQL (the SQL below is valid in both, unless an entry is a
{backend: script} dict where the two differ: see `migration_script`).

Each entry is applied once, in order, and recorded in `schema_version`; add new entries, never edit old ones.
A NULL category (e.g. an unknown Python version) is stored as '' because it is part of a primary key.
"""

MIGRATIONS: list[str | dict[str, str]] = [
    # 1: per-second windows, rollups, pipeline counters
    """
    CREATE TABLE IF NOT EXISTS windows (
        start BIGINT PRIMARY KEY,
        downloads BIGINT NOT NULL,
        unique_packages BIGINT NOT NULL,
        countries TEXT NOT NULL,
        top TEXT NOT NULL,
        written_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS rollup_buckets (
        bucket BIGINT PRIMARY KEY,
        applied_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS daily (
        day TEXT NOT NULL,
        project TEXT NOT NULL,
        dimension TEXT NOT NULL,
        category TEXT NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (day, project, dimension, category)
    );
    CREATE INDEX IF NOT EXISTS daily_by_project ON daily (project, dimension, day);
    CREATE TABLE IF NOT EXISTS daily_totals (
        day TEXT NOT NULL,
        dimension TEXT NOT NULL,
        category TEXT NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (day, dimension, category)
    );
    CREATE TABLE IF NOT EXISTS pipeline_stats (
        id INTEGER PRIMARY KEY,
        counters TEXT NOT NULL,
        offsets TEXT NOT NULL,
        watermark DOUBLE PRECISION,
        updated_at DOUBLE PRECISION
    );
    """,
    # 2: days filled by `pypi-pulse backfill`; the stream adds nothing to them (see sink/rollup.py)
    """
    CREATE TABLE IF NOT EXISTS backfilled_days (
        day TEXT PRIMARY KEY,
        source TEXT NOT NULL,
        rows_written BIGINT NOT NULL,
        completed_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 3 (dashboard): "a country's top packages of a period" reads one category across all projects; without this
    # covering index it scans the whole table (15x slower on a small sink, see benchmarks/dashboard_latency.py).
    # Category first, so that the planner never prefers it to daily_by_project for one project's queries.
    """
    CREATE INDEX IF NOT EXISTS daily_by_category ON daily (category, dimension, day, project, downloads);
    """,
    # 4: days whose long-tail detail has been folded (sink/rollup.py, bounded storage)
    """
    CREATE TABLE IF NOT EXISTS compacted_days (
        day TEXT PRIMARY KEY,
        min_daily_downloads BIGINT NOT NULL,
        compacted_at DOUBLE PRECISION NOT NULL
    );
    """,
    # 5 (history latency, write speed; sink/summaries.py): the all-dimension covering index cost every rollup write
    # a third B-tree whose entries move on each update; only the country dimension needs it (a country's top
    # packages), so it becomes a partial index. `with_mirrors` gets a small one for the list of known projects.
    # Complete days are summarised once (each country's top packages with a bound on the rest, and downloads by
    # package category), so that long periods read a few thousand rows instead of millions; `day_summaries` says
    # from which figures a day was summarised, and a summary whose figures no longer match is not used.
    """
    DROP INDEX IF EXISTS daily_by_category;
    CREATE INDEX IF NOT EXISTS daily_country ON daily (category, day, project, downloads) WHERE dimension = 'country';
    CREATE INDEX IF NOT EXISTS daily_projects ON daily (project) WHERE dimension = 'with_mirrors';
    CREATE TABLE IF NOT EXISTS day_summaries (
        day TEXT PRIMARY KEY,
        overall BIGINT NOT NULL,
        compacted INTEGER NOT NULL,
        categories TEXT NOT NULL,
        computed_at DOUBLE PRECISION NOT NULL
    );
    CREATE TABLE IF NOT EXISTS country_day_top (
        country TEXT NOT NULL,
        day TEXT NOT NULL,
        project TEXT NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (country, day, project)
    );
    CREATE TABLE IF NOT EXISTS country_day_bound (
        country TEXT NOT NULL,
        day TEXT NOT NULL,
        bound BIGINT NOT NULL,
        PRIMARY KEY (country, day)
    );
    CREATE TABLE IF NOT EXISTS category_daily (
        day TEXT NOT NULL,
        category TEXT NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (day, category)
    );
    """,
    # 6 (live latency): a sealed 10-minute block can hold millions of rows; the dataflow applies it in slices between
    # batches, each slice in its own transaction recorded here until the whole block is, so that a restart resumes
    # it without counting a slice twice (sink/sqlite.py `apply_in_slices`).
    """
    CREATE TABLE IF NOT EXISTS rollup_slices (
        bucket BIGINT NOT NULL,
        slice INTEGER NOT NULL,
        applied_at DOUBLE PRECISION NOT NULL,
        PRIMARY KEY (bucket, slice)
    );
    """,
    # 7 (rollup write speed, storage): in SQLite `daily` becomes a WITHOUT ROWID table clustered on its key, and the
    # project-first index goes. A block's upsert then maintains one full B-tree instead of three (rowid table, key
    # index, project index). One project's rows
    # are read by seeking each day of the period (`Sink.project_days`), which the day-first key serves directly.
    # PostgreSQL keeps its heap table and project index; it reads through the same day lists.
    {
        "sqlite": """
        CREATE TABLE daily_by_day (
            day TEXT NOT NULL,
            project TEXT NOT NULL,
            dimension TEXT NOT NULL,
            category TEXT NOT NULL,
            downloads BIGINT NOT NULL,
            PRIMARY KEY (day, project, dimension, category)
        ) WITHOUT ROWID;
        INSERT INTO daily_by_day (day, project, dimension, category, downloads)
            SELECT day, project, dimension, category, downloads FROM daily ORDER BY day, project, dimension, category;
        DROP TABLE daily;
        ALTER TABLE daily_by_day RENAME TO daily;
        CREATE INDEX daily_country ON daily (category, day, project, downloads) WHERE dimension = 'country';
        CREATE INDEX daily_projects ON daily (project) WHERE dimension = 'with_mirrors';
        """,
        "postgresql": "",
    },
    # 8 (trending, sink/recent.py): each sealed block's downloads per project, kept for the last hours, and of all
    # projects, kept with the rollups: the last hours' exact counts and the hour-of-day profile of past days. In
    # SQLite the per-project table is clustered on its key (a rowid table would store every row twice).
    {
        "sqlite": """
        CREATE TABLE IF NOT EXISTS recent_downloads (
            block_end BIGINT NOT NULL,
            project TEXT NOT NULL,
            downloads BIGINT NOT NULL,
            PRIMARY KEY (block_end, project)
        ) WITHOUT ROWID;
        CREATE TABLE IF NOT EXISTS block_totals (
            block_end BIGINT PRIMARY KEY,
            downloads BIGINT NOT NULL
        );
        """,
        "postgresql": """
        CREATE TABLE IF NOT EXISTS recent_downloads (
            block_end BIGINT NOT NULL,
            project TEXT NOT NULL,
            downloads BIGINT NOT NULL,
            PRIMARY KEY (block_end, project)
        );
        CREATE TABLE IF NOT EXISTS block_totals (
            block_end BIGINT PRIMARY KEY,
            downloads BIGINT NOT NULL
        );
        """,
    },
    # 9 (Categories tab, sink/summaries.py): each summarised day's downloads per (country, package category), so that
    # "a country's category mix against the world's" over months reads one row per country and category a day
    # instead of every categorised project's country rows. Summaries made before it are redone (their digest,
    # `summaries.summary_digest`, changed).
    """
    CREATE TABLE IF NOT EXISTS category_country_daily (
        day TEXT NOT NULL,
        country TEXT NOT NULL,
        category TEXT NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (day, country, category)
    );
    -- every country's top packages of a period at once (the Countries map's hover, sink/country_tops.py): one pass
    -- over covering indexes in (country, project) order, with no lookups into the tables and no sort
    CREATE INDEX IF NOT EXISTS country_day_top_by_project ON country_day_top (country, project, day, downloads);
    CREATE INDEX IF NOT EXISTS country_day_bound_cover ON country_day_bound (country, day, bound);
    """,
    # 10 (history as Parquet files, sink/history.py): the rollups leave the database. Their tables are kept under
    # `legacy_` names until `pypi-pulse history import` has converted them, so that no reader can mistake an old,
    # no longer written table for the history; the applied-bucket and slice records have no use any more.
    """
    ALTER TABLE daily RENAME TO legacy_daily;
    ALTER TABLE daily_totals RENAME TO legacy_daily_totals;
    ALTER TABLE backfilled_days RENAME TO legacy_backfilled_days;
    ALTER TABLE compacted_days RENAME TO legacy_compacted_days;
    DROP TABLE rollup_slices;
    DROP TABLE rollup_buckets;
    """,
    # 11 (sharded dataflow, sink/recent.py): each shard's part of a sealed block's all-project total; a block's
    # `block_totals` row is their sum, so parts that arrive at different times (or again) add up exactly once
    """
    CREATE TABLE IF NOT EXISTS block_part_totals (
        block_end BIGINT NOT NULL,
        part INTEGER NOT NULL,
        downloads BIGINT NOT NULL,
        PRIMARY KEY (block_end, part)
    );
    """,
]


def migration_script(entry: str | dict[str, str], backend: str) -> str:
    """The SQL of one migration for a backend ('sqlite' or 'postgresql'); empty when it has nothing to do there."""
    return entry if isinstance(entry, str) else entry[backend]


NULL_CATEGORY = ""
NULL_AS_DB_CATEGORY = {None: NULL_CATEGORY}  # `.get(c, c)`: `to_db_category` over a column at C speed


def to_db_category(c):
    return NULL_CATEGORY if c is None else c


def from_db_category(c):
    return None if c == NULL_CATEGORY else c
