"""The operator files in deploy/ are valid for the real tools: promtool for rules and config, JSON for Grafana."""

from __future__ import annotations

import json
import subprocess

import pytest
from prom_helpers import DEPLOY, need

pytestmark = pytest.mark.prometheus


def promtool(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([need("promtool"), *args], capture_output=True, text=True, timeout=60)


def test_alert_rules_pass_promtool_check_rules():
    r = promtool("check", "rules", str(DEPLOY / "prometheus" / "alerts.yml"))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SUCCESS" in r.stdout


def test_alert_rules_fire_as_their_unit_tests_expect():
    """alerts_test.yml feeds series and asserts which alerts fire when (stalled, sink errors, dead letters, lag,
    BigQuery budget)."""
    r = promtool("test", "rules", str(DEPLOY / "prometheus" / "alerts_test.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_example_scrape_config_passes_promtool_check_config():
    r = promtool("check", "config", str(DEPLOY / "prometheus" / "prometheus.yml"))
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_alert_named_in_the_issue_exists():
    import yaml

    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    assert {
        "PyPIPulsePipelineStalled",
        "PyPIPulseConsumerLagGrowing",
        "PyPIPulseDeadLetterRateHigh",
        "PyPIPulseSinkErrors",
        "PyPIPulseBigQueryBudgetNearlySpent",
    } <= alerts


def test_grafana_dashboard_is_importable_with_a_prometheus_datasource_variable():
    dash = json.loads((DEPLOY / "grafana" / "pypi-pulse.json").read_text())
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert "id" not in dash or dash["id"] is None  # an id would clash with whatever the target Grafana holds
    titles = [p["title"] for p in dash["panels"]]
    assert len(titles) == len(set(titles))
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    queried = [p for p in dash["panels"] if p["type"] != "row"]
    for p in queried:
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"], p["title"]
        for t in p["targets"]:
            assert t["expr"].strip() and t["datasource"]["uid"] == "${datasource}", p["title"]
    kinds = {p["type"] for p in queried}
    assert {"timeseries", "stat", "geomap", "table", "bargauge"} <= kinds
