"""The event model accepts every timestamp form real exports contain, and nulls where BigQuery has nulls."""

import pytest

from pypi_pulse.events import DECODER, BadTimestamp, epoch_second, epoch_seconds, format_bigquery_ts, iso_second
from pypi_pulse.names import normalize

SECOND = 1795219190  # 2026-11-20T23:59:50Z


@pytest.mark.parametrize(
    "ts",
    [
        "2026-11-20 23:59:50.123456 UTC",
        "2026-11-20 23:59:50 UTC",
        "2026-11-20T23:59:50Z",
        "2026-11-20T23:59:50.999Z",
        "2026-11-20T23:59:50+00:00",
        "2026-11-20T23:59:50.5+00:00",
        "2026-11-21T01:59:50.25+02:00",
        "2026-11-20T18:59:50-05:00",
        "2026-11-20T23:59:50",
        SECOND,
        SECOND + 0.75,
        SECOND * 1000 + 250,
        SECOND * 1_000_000 + 123456,
    ],
)
def test_every_timestamp_form_lands_in_its_utc_second(ts):
    assert epoch_second(ts) == SECOND
    assert int(epoch_seconds(ts) // 1) == SECOND


@pytest.mark.parametrize("ts", ["yesterday", "", None, True, "2026-13-40 25:61:00 UTC"])
def test_unparseable_timestamps_are_rejected_with_a_reason(ts):
    with pytest.raises(BadTimestamp):
        epoch_second(ts)


def test_bigquery_text_format_round_trips():
    assert format_bigquery_ts(SECOND + 0.123456) == "2026-11-20 23:59:50.123456 UTC"
    assert iso_second(SECOND) == "2026-11-20T23:59:50Z"


def test_rows_with_null_details_country_and_ci_decode():
    row = DECODER.decode(
        b'{"timestamp":"2026-11-20 23:59:50 UTC","country_code":null,"url":"/x","project":"numpy",'
        b'"file":{"filename":"numpy-2.0.whl","project":"numpy","version":"2.0","type":"bdist_wheel"},'
        b'"details":null,"tls_protocol":null,"tls_cipher":null,"extra_column":1}'
    )
    assert row.country_code is None and row.details is None and row.file.project == "numpy"
    row = DECODER.decode(b'{"timestamp":1,"project":"a","details":{"ci":true,"installer":null,"python":null}}')
    assert row.details.ci is True and row.details.installer is None


@pytest.mark.parametrize("name", ["zope.interface", "Zope_Interface", "zope-interface", "ZOPE--._interface"])
def test_project_names_normalise_per_pep_503(name):
    assert normalize(name) == "zope-interface"
