"""The readers' views of the event schema are derived from `pypi_pulse.events.Download`: they hold the shapes the
readers had when each was written out by hand (the dataflow's Arrow schema, the replay's flat columns, the
BigQuery reader's nested rows), and a path the schema lacks is refused."""

from __future__ import annotations

import msgspec
import pyarrow as pa
import pytest

from pypi_pulse.event_fields import arrow_schema, field_tree, nester, paths, reader_struct
from pypi_pulse.rules import READ_FIELDS


def test_the_columnar_tiers_schema_is_the_one_it_always_read():
    s = pa.string()
    assert arrow_schema(f for f in READ_FIELDS if f != "file.project") == pa.schema(
        [
            ("timestamp", s),
            ("country_code", s),
            ("project", s),
            ("file", pa.struct([("version", s), ("type", s)])),
            (
                "details",
                pa.struct(
                    [
                        ("installer", pa.struct([("name", s)])),
                        ("python", s),
                        ("system", pa.struct([("name", s)])),
                        ("cpu", s),
                        ("ci", pa.bool_()),
                    ]
                ),
            ),
        ]
    )


def test_the_reader_struct_reads_only_its_fields_with_the_schemas_types():
    Event = reader_struct(READ_FIELDS, "Event")
    decode = msgspec.json.Decoder(Event).decode
    e = decode(
        b'{"timestamp": 1.5, "url": "/x", "project": "p", "file": {"filename": "f", "type": "sdist"},'
        b' "details": {"installer": {"name": "pip", "version": "1"}, "distro": {"id": "x"}, "ci": true}}'
    )
    assert (e.timestamp, e.project, e.file.type, e.file.version, e.details.installer.name, e.details.ci) == (
        1.5,
        "p",
        "sdist",
        None,
        "pip",
        True,
    )
    assert not hasattr(e, "url") and not hasattr(e.file, "filename") and not hasattr(e.details.installer, "version")
    assert hash(e.details) == hash(decode(b'{"details": {"installer": {"name": "pip"}, "ci": true}}').details)
    with pytest.raises(msgspec.ValidationError):
        decode(b'{"details": {"ci": "yes"}}')
    with pytest.raises(ValueError, match="not a field"):
        reader_struct(["details.colour"])


def test_the_flat_columns_the_replay_rebuilds_are_every_field_of_the_event():
    assert list(field_tree()) == [
        "timestamp",
        "country_code",
        "url",
        "project",
        "file",
        "details",
        "tls_protocol",
        "tls_cipher",
    ]
    assert "details.distro.libc.lib" in paths() and "details.installer.version" in paths()
    assert list(field_tree()["details"]) == [
        "installer",
        "python",
        "implementation",
        "distro",
        "system",
        "cpu",
        "openssl_version",
        "setuptools_version",
        "rustc_version",
        "ci",
    ]


def test_nested_rows_keep_top_level_nulls_and_omit_unset_fields_inside_records():
    nest = nester(
        [
            "timestamp",
            "country_code",
            "file.project",
            "file.version",
            "details.installer.name",
            "details.python",
            "details.system.name",
            "details.ci",
        ]
    )
    assert nest("t", None, "p", None, None, "3.12", None, False) == {
        "timestamp": "t",
        "country_code": None,
        "file": {"project": "p"},
        "details": {"python": "3.12", "ci": False},
    }
    assert nest("t", "US", None, None, None, None, None, None) == {
        "timestamp": "t",
        "country_code": "US",
        "file": None,
        "details": None,
    }
    assert nest("t", "US", None, "1", "pip", None, "Linux", None) == {
        "timestamp": "t",
        "country_code": "US",
        "file": {"version": "1"},
        "details": {"installer": {"name": "pip"}, "system": {"name": "Linux"}},
    }
