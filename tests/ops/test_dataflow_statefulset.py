"""deploy/kubernetes/dataflow.yaml runs the dataflow as one Bytewax cluster of `replicas` pods: the settings each pod
gets make, through the CLI's own code, exactly the pods' stable DNS names as the members' addresses and the pod's
own index; the pods start together; every member mounts one ReadWriteMany recovery volume at DATA_DIR; each is
probed and scraped on the one metrics port; the topic and the shards give every worker a share; a drain takes one
member at a time.

Structural checks of the manifests (their schema is test_deploy_manifests.py's); tests/dataflow/
test_statefulset_cluster.py runs members started this way.
"""

from __future__ import annotations

import pytest
from test_deploy_manifests import flag_value, of_kind, settings_configmap

from pypi_pulse.config import Settings, load_settings

CLUSTER_SETTINGS = ("PYPI_PULSE_PROCESS_ID", "PYPI_PULSE_CLUSTER_SIZE", "PYPI_PULSE_CLUSTER_ADDRESS")


def statefulset() -> dict:
    (flow,) = of_kind("StatefulSet")
    return flow


def container() -> dict:
    (c,) = statefulset()["spec"]["template"]["spec"]["containers"]
    return c


def env() -> dict[str, dict]:
    return {e["name"]: e for e in container().get("env", [])}


def services() -> dict[str, dict]:
    return {s["metadata"]["name"]: s for s in of_kind("Service")}


def selects_the_pods(svc: dict) -> bool:
    return svc["spec"]["selector"].items() <= statefulset()["spec"]["template"]["metadata"]["labels"].items()


def pod_settings(monkeypatch, tmp_path, ordinal: int) -> Settings:
    """The settings pod `ordinal` loads: the ConfigMap, then its own env, the downward API's name filled in."""
    for name, value in settings_configmap().items():
        monkeypatch.setenv(name, value)
    pod_name = f"{statefulset()['metadata']['name']}-{ordinal}"
    for name, e in env().items():
        if "value" in e:
            monkeypatch.setenv(name, e["value"])
        else:
            assert e["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, name
            monkeypatch.setenv(name, pod_name)
    monkeypatch.setenv("PYPI_PULSE_DATA_DIR", str(tmp_path))  # /var/lib/pypi-pulse exists only in the image
    return load_settings(None)


def test_the_members_start_together_as_one_statefulset_with_their_peers_service():
    spec = statefulset()["spec"]
    assert spec["podManagementPolicy"] == "Parallel", "no member runs until all have started"
    assert container()["args"][0] == "dataflow"
    assert set(CLUSTER_SETTINGS) <= set(env())
    assert int(env()["PYPI_PULSE_CLUSTER_SIZE"]["value"]) == spec["replicas"] > 1
    assert not set(CLUSTER_SETTINGS) & set(settings_configmap()), "only the dataflow's pods are members"
    peers = services()[spec["serviceName"]]
    assert peers["spec"]["clusterIP"] == "None" and selects_the_pods(peers)  # a DNS name for each pod
    assert peers["spec"]["publishNotReadyAddresses"] is True, "a member is ready only once the cluster has formed"
    assert "pypi-pulse/metrics" not in peers["metadata"].get("labels", {})


def test_each_pod_s_settings_make_the_pods_names_its_members_and_its_own_index(monkeypatch, tmp_path):
    """What `dataflow` computes from each pod's settings (the CLI's own code), against what Kubernetes names the
    pods: <statefulset>-<i>.<serviceName>, on the container's cluster port that the peers Service serves."""
    from pypi_pulse.assembly import cluster_members

    spec = statefulset()["spec"]
    name, replicas = statefulset()["metadata"]["name"], spec["replicas"]
    (cluster_port,) = [p["containerPort"] for p in container()["ports"] if p["name"] == "cluster"]
    (peer_port,) = services()[spec["serviceName"]]["spec"]["ports"]
    assert peer_port["targetPort"] == "cluster" and peer_port["port"] == cluster_port
    pods = [f"{name}-{i}.{spec['serviceName']}:{cluster_port}" for i in range(replicas)]
    for ordinal in range(replicas):
        s = pod_settings(monkeypatch, tmp_path, ordinal)
        assert s.processes == 1, "a pod is one member; a local cluster's members would serve metrics on port + i"
        assert cluster_members(s, None, None) == (ordinal, pods)


def test_every_member_mounts_one_readwritemany_recovery_volume_at_data_dir(monkeypatch, tmp_path):
    spec = statefulset()["spec"]
    assert "volumeClaimTemplates" not in spec, "a volume per pod would split the recovery store"
    data_dir = settings_configmap()["PYPI_PULSE_DATA_DIR"]
    mounts = {m["mountPath"]: m["name"] for m in container()["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["template"]["spec"]["volumes"]}
    # mounted at DATA_DIR, which holds the store (DATA_DIR/recovery) and nothing per pod
    claim = volumes[mounts[data_dir]]["persistentVolumeClaim"]["claimName"]
    (pvc,) = [c for c in of_kind("PersistentVolumeClaim") if c["metadata"]["name"] == claim]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert not any(path.startswith(f"{data_dir}/") for path in mounts)
    assert env()["PYPI_PULSE_RECOVERY"]["value"] == "true"
    s = pod_settings(monkeypatch, tmp_path, 0)
    assert s.recovery_dir.parent == s.data_dir


def test_a_member_stopped_alone_exits_before_kubernetes_kills_it(monkeypatch, tmp_path):
    """SIGTERM ends a member's inputs; stopped alone it exits after cluster_stop_seconds, which must come before
    the grace period ends (else Kubernetes kills it first, and the others wait for it meanwhile)."""
    grace = statefulset()["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert pod_settings(monkeypatch, tmp_path, 0).cluster_stop_seconds < grace


def test_every_member_is_probed_and_scraped_on_the_one_metrics_port():
    c = container()
    ports = {p["name"]: p["containerPort"] for p in c["ports"]}
    assert ports["metrics"] == int(flag_value(c["args"], "--metrics-port"))
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "metrics"}
    (monitor,) = of_kind("ServiceMonitor")
    (endpoint,) = monitor["spec"]["endpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    scraped = [
        s
        for s in services().values()
        if selector.items() <= s["metadata"].get("labels", {}).items() and selects_the_pods(s)
    ]
    (metrics,) = scraped  # one Service over all the members: the ServiceMonitor scrapes each of its endpoints
    assert [(p["name"], p["targetPort"]) for p in metrics["spec"]["ports"]] == [(endpoint["port"], "metrics")]


@pytest.mark.parametrize("what", ["shards", "partitions"])
def test_every_worker_of_the_cluster_gets_a_share(what):
    """Shards (the clocks Bytewax places) and the topic's partitions (what each worker reads) at least the
    cluster's workers: replicas x workers per pod."""
    cm = settings_configmap()
    workers = int(env().get("PYPI_PULSE_WORKERS", {}).get("value") or cm.get("PYPI_PULSE_WORKERS") or 1)
    default = Settings.model_fields[what].default
    have = int(
        env().get(f"PYPI_PULSE_{what.upper()}", {}).get("value") or cm.get(f"PYPI_PULSE_{what.upper()}") or default
    )
    assert have >= statefulset()["spec"]["replicas"] * workers


def test_a_voluntary_disruption_takes_down_one_member_at_a_time():
    (pdb,) = [p for p in of_kind("PodDisruptionBudget") if p["metadata"]["name"] == statefulset()["metadata"]["name"]]
    assert pdb["spec"]["maxUnavailable"] == 1
    labels = statefulset()["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
