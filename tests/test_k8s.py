"""The Kubernetes manifests evaluated the way a cluster evaluates them, not only validated.

`kubernetes-validate` says a manifest is well-formed; it cannot say that a NetworkPolicy cuts the
ingress controller off from the pods an Ingress names. Here every Ingress backend is followed to
the pods its Service selects, the NetworkPolicies selecting those pods are found (pod selectors
with matchLabels and matchExpressions, policyTypes and their defaults), and a peer (its namespace's
labels and its own) is admitted on a port only if some policy's rule admits it, named ports
resolved through the pods' container ports. Then: the kustomization that holds the one image tag,
rendered and validated; disruption budgets and topology spread; the worker's liveness probe, run.
"""

from __future__ import annotations

import ipaddress
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, Gauge, start_http_server

from lib.config.env import Settings
from tests.conftest import PROJECT_ROOT
from tests.helpers import free_port, process_env, stop_process

BIN = Path(sys.executable).parent
K8S = PROJECT_ROOT / "deploy" / "k8s"
OBS = PROJECT_ROOT / "deploy" / "observability"
Doc = dict[str, Any]

# What the manifests document (50-networkpolicy.yaml, DEPLOY.md): the namespaces, by the label
# Kubernetes sets on every namespace, of the ingress controller, Prometheus and the control center.
NAME_LABEL = "kubernetes.io/metadata.name"
IMAGE = "halobestie-backend"
LISTENERS = ("public", "internal", "realtime")


# --- the evaluation --------------------------------------------------------------------------


@dataclass(frozen=True)
class Peer:
    """A pod that opens a connection: its namespace's labels, its own labels and its address."""

    namespace: str
    labels: dict[str, str] = field(default_factory=dict)
    ip: str = "10.244.9.9"
    namespace_labels: dict[str, str] = field(default_factory=dict)

    def ns_labels(self) -> dict[str, str]:
        return {NAME_LABEL: self.namespace, **self.namespace_labels}


@dataclass(frozen=True)
class Pod:
    """A pod a workload makes: its namespace, its template labels, its containers."""

    owner: str
    namespace: str
    labels: dict[str, str]
    containers: list[Doc]

    def container_ports(self) -> list[tuple[int, str, str | None]]:
        return [
            (p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
            for c in self.containers
            for p in c.get("ports", [])
        ]


def selector_matches(selector: Doc | None, labels: dict[str, str]) -> bool:
    """A LabelSelector: every matchLabels pair and every matchExpressions requirement holds;
    an empty selector ({}) matches everything."""
    selector = selector or {}
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], expr.get("values") or []
        ok = {
            "In": key in labels and labels[key] in values,
            "NotIn": key not in labels or labels[key] not in values,
            "Exists": key in labels,
            "DoesNotExist": key not in labels,
        }[op]
        if not ok:
            return False
    return True


def policy_types(policy: Doc) -> list[str]:
    """As the API server defaults them: Ingress always, Egress when egress rules are given."""
    spec = policy["spec"]
    if spec.get("policyTypes"):
        return list(spec["policyTypes"])
    return ["Ingress", *(["Egress"] if spec.get("egress") else [])]


def _peer_matches(rule_peer: Doc, policy_namespace: str, peer: Peer) -> bool:
    if "ipBlock" in rule_peer:
        block = rule_peer["ipBlock"]
        address = ipaddress.ip_address(peer.ip)
        inside = address in ipaddress.ip_network(block["cidr"])
        return inside and not any(address in ipaddress.ip_network(c) for c in block.get("except") or [])
    ns_selector, pod_selector = rule_peer.get("namespaceSelector"), rule_peer.get("podSelector")
    # A podSelector alone selects pods of the policy's own namespace.
    in_namespace = (
        peer.namespace == policy_namespace if ns_selector is None else selector_matches(ns_selector, peer.ns_labels())
    )
    return in_namespace and (pod_selector is None or selector_matches(pod_selector, peer.labels))


def _port_matches(rule_port: Doc, pod: Pod, port: int, protocol: str) -> bool:
    if rule_port.get("protocol", "TCP") != protocol:
        return False
    wanted: Any = rule_port.get("port")
    if wanted is None:
        return True  # every port of the protocol
    if isinstance(wanted, str):  # a named port: whatever this pod's container port of that name is
        return any(n == wanted and pr == protocol and cp == port for cp, pr, n in pod.container_ports())
    return int(wanted) <= port <= int(rule_port.get("endPort", wanted))


def policies_selecting(pod: Pod, docs: list[Doc], kind: str = "Ingress") -> list[Doc]:
    return [
        d
        for d in docs
        if d["kind"] == "NetworkPolicy"
        and d["metadata"].get("namespace", "default") == pod.namespace
        and selector_matches(d["spec"]["podSelector"], pod.labels)
        and kind in policy_types(d)
    ]


def admitted(peer: Peer, pod: Pod, port: int, docs: list[Doc], protocol: str = "TCP") -> bool:
    """Whether the cluster lets `peer` open `port` on `pod`: a pod no Ingress policy selects takes
    anything; once one does, only what some rule of some selecting policy admits gets in. A rule
    admits when a `from` entry matches the peer (none given: any peer) and a `ports` entry matches
    the port (none given: any port)."""
    selecting = policies_selecting(pod, docs)
    if not selecting:
        return True
    for policy in selecting:
        namespace = policy["metadata"].get("namespace", "default")
        for rule in policy["spec"].get("ingress") or []:
            sources, ports = rule.get("from") or [], rule.get("ports") or []
            if (not sources or any(_peer_matches(s, namespace, peer) for s in sources)) and (
                not ports or any(_port_matches(p, pod, port, protocol) for p in ports)
            ):
                return True
    return False


def pods(docs: list[Doc]) -> list[Pod]:
    """The pods the workloads make (Deployments, Jobs), one per workload: replicas share labels."""
    found = []
    for d in docs:
        if d["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            template = d["spec"]["template"]
            found.append(
                Pod(
                    owner=d["metadata"]["name"],
                    namespace=d["metadata"].get("namespace", "default"),
                    labels=template["metadata"].get("labels") or {},
                    containers=template["spec"]["containers"],
                )
            )
    return found


def endpoints(docs: list[Doc], namespace: str, service_name: str, port: Doc) -> list[tuple[Pod, int]]:
    """The (pod, container port) pairs a Service port sends to: its selector's pods, and its
    targetPort (a number, a container port's name, or by default the Service port itself)."""
    service = next(
        d
        for d in docs
        if d["kind"] == "Service"
        and d["metadata"]["name"] == service_name
        and d["metadata"].get("namespace", "default") == namespace
    )
    service_port = next(
        p for p in service["spec"]["ports"] if p["port"] == port.get("number") or p.get("name") == port.get("name")
    )
    target = service_port.get("targetPort", service_port["port"])
    protocol = service_port.get("protocol", "TCP")
    selector = service["spec"].get("selector") or {}
    result = []
    for pod in pods(docs):
        if pod.namespace != namespace or not selector or not selector_matches({"matchLabels": selector}, pod.labels):
            continue
        if isinstance(target, str):
            result += [(pod, cp) for cp, pr, name in pod.container_ports() if name == target and pr == protocol]
        else:
            result.append((pod, target))
    return result


def ingress_backends(docs: list[Doc]) -> list[tuple[str, str, Doc]]:
    """(namespace, service, port) for every backend of every Ingress."""
    found = []
    for d in docs:
        if d["kind"] != "Ingress":
            continue
        namespace = d["metadata"].get("namespace", "default")
        backends = [d["spec"]["defaultBackend"]] if "defaultBackend" in d["spec"] else []
        backends += [p["backend"] for r in d["spec"].get("rules", []) for p in r.get("http", {}).get("paths", [])]
        found += [(namespace, b["service"]["name"], b["service"]["port"]) for b in backends]
    return found


# --- the manifests ---------------------------------------------------------------------------


def _load(path: Path) -> list[Doc]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def kustomization() -> Doc:
    doc: Doc = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    return doc


def manifests() -> list[Doc]:
    """What `kubectl apply -k deploy/k8s/` applies: the kustomization's resources."""
    return [d for name in kustomization()["resources"] for d in _load(K8S / name)]


def the_namespace() -> Doc:
    return next(d for d in manifests() if d["kind"] == "Namespace")


INGRESS_CONTROLLER = Peer(
    "ingress-nginx", {"app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/component": "controller"}
)
PROMETHEUS = Peer("monitoring", {"app.kubernetes.io/name": "prometheus"})
CONTROL_CENTER = Peer("control-center", {"app.kubernetes.io/name": "cc-gateway"})
STRANGER = Peer("tenant-a", {"app": "shell"})


def neighbour() -> Peer:
    """Another pod in the app's own namespace (Valkey, a debug shell), not one of the app's."""
    ns = the_namespace()
    return Peer(ns["metadata"]["name"], {"app": "debug"}, namespace_labels=ns["metadata"].get("labels") or {})


def _pod(docs: list[Doc], owner: str) -> Pod:
    return next(p for p in pods(docs) if p.owner == owner)


def _reachable(peer: Peer, docs: list[Doc]) -> set[tuple[str, int]]:
    """Every (workload, declared container port) the peer may open."""
    return {
        (pod.owner, port)
        for pod in pods(docs)
        for port, _, _ in pod.container_ports()
        if admitted(peer, pod, port, docs)
    }


# --- the evaluation's own rules, on small policies --------------------------------------------

POD = Pod("web", "app", {"role": "web", "tier": "front"}, [{"ports": [{"name": "http", "containerPort": 8080}]}])


def _policy(spec: Doc, namespace: str = "app") -> Doc:
    return {"kind": "NetworkPolicy", "metadata": {"name": "p", "namespace": namespace}, "spec": spec}


@pytest.mark.parametrize(
    ("spec", "peer", "port", "expected"),
    [
        ({"podSelector": {"matchLabels": {"role": "db"}}, "policyTypes": ["Ingress"]}, STRANGER, 8080, True),
        ({"podSelector": {}, "policyTypes": ["Ingress"]}, STRANGER, 8080, False),
        ({"podSelector": {}, "egress": [{}]}, STRANGER, 8080, False),  # defaults to Ingress+Egress
        ({"podSelector": {}, "policyTypes": ["Egress"]}, STRANGER, 8080, True),
        ({"podSelector": {}, "ingress": [{}]}, STRANGER, 8080, True),  # a rule with no from/ports: all
        ({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}, STRANGER, 8080, True),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": "http"}]}]}, STRANGER, 9090, False),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": "http", "protocol": "UDP"}]}]}, STRANGER, 8080, False),
        ({"podSelector": {}, "ingress": [{"ports": [{"port": 8000, "endPort": 8100}]}]}, STRANGER, 8080, True),
        (
            {"podSelector": {"matchExpressions": [{"key": "role", "operator": "In", "values": ["api"]}]}},
            STRANGER,
            8080,
            True,
        ),
        (
            {"podSelector": {"matchExpressions": [{"key": "role", "operator": "NotIn", "values": ["api"]}]}},
            STRANGER,
            8080,
            False,
        ),
        ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, STRANGER, 8080, False),
        ({"podSelector": {}, "ingress": [{"from": [{"podSelector": {}}]}]}, Peer("app"), 8080, True),
        ({"podSelector": {}, "ingress": [{"from": [{"namespaceSelector": {}}]}]}, STRANGER, 8080, True),
        (  # one peer with both selectors: the pod AND its namespace must match
            {
                "podSelector": {},
                "ingress": [
                    {"from": [{"namespaceSelector": {"matchLabels": {NAME_LABEL: "tenant-a"}}, "podSelector": {}}]}
                ],
            },
            Peer("tenant-a", {"app": "shell"}),
            8080,
            True,
        ),
        (
            {
                "podSelector": {},
                "ingress": [
                    {
                        "from": [
                            {
                                "namespaceSelector": {"matchLabels": {NAME_LABEL: "tenant-a"}},
                                "podSelector": {"matchLabels": {"app": "other"}},
                            }
                        ]
                    }
                ],
            },
            Peer("tenant-a", {"app": "shell"}),
            8080,
            False,
        ),
        (
            {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}]},
            Peer("x", ip="10.244.1.1"),
            8080,
            True,
        ),
        (
            {
                "podSelector": {},
                "ingress": [{"from": [{"ipBlock": {"cidr": "10.244.0.0/16", "except": ["10.244.1.0/24"]}}]}],
            },
            Peer("x", ip="10.244.1.1"),
            8080,
            False,
        ),
    ],
)
def test_the_evaluation_follows_the_networkpolicy_rules(spec: Doc, peer: Peer, port: int, expected: bool) -> None:
    assert admitted(peer, POD, port, [_policy(spec)]) is expected


def test_a_policy_in_another_namespace_does_not_select_the_pod() -> None:
    assert admitted(STRANGER, POD, 8080, [_policy({"podSelector": {}}, namespace="other")])


# --- traffic reaches what the Ingress names, and nothing else ---------------------------------


def test_the_ingress_controller_reaches_every_ingress_backend() -> None:
    docs = manifests()
    backends = ingress_backends(docs)
    assert {name for _, name, _ in backends} == {"halobestie-public", "halobestie-realtime"}
    for namespace, service, port in backends:
        targets = endpoints(docs, namespace, service, port)
        assert targets, f"{service}:{port} selects no pod"
        for pod, container_port in targets:
            assert container_port in [cp for cp, _, _ in pod.container_ports()], (service, pod.owner, container_port)
            assert admitted(INGRESS_CONTROLLER, pod, container_port, docs), (
                f"the ingress controller is cut off from {pod.owner}:{container_port} (behind {service})"
            )


def test_monitoring_reaches_every_metrics_port() -> None:
    docs = manifests()
    monitor = next(d for d in _load(OBS / "podmonitor.yaml") if d["kind"] == "PodMonitor")
    namespace = monitor["metadata"]["namespace"]
    scraped = [
        p for p in pods(docs) if p.namespace == namespace and selector_matches(monitor["spec"]["selector"], p.labels)
    ]
    served = {d["metadata"]["name"] for d in docs if d["kind"] == "Deployment"}
    assert served <= {p.owner for p in scraped}
    for endpoint in monitor["spec"]["podMetricsEndpoints"]:
        for pod in scraped:
            if pod.owner not in served:
                continue  # the migrate Job serves no metrics port
            ports = [cp for cp, _, name in pod.container_ports() if name == endpoint["port"]]
            assert ports, f"{pod.owner} has no port named {endpoint['port']}"
            assert admitted(PROMETHEUS, pod, ports[0], docs), f"monitoring is cut off from {pod.owner}:{ports[0]}"


def test_the_control_center_reaches_the_internal_listener_and_nobody_else_does() -> None:
    docs = manifests()
    targets = endpoints(docs, "halobestie", "halobestie-internal", {"number": 3001})
    assert targets
    for pod, port in targets:
        assert admitted(CONTROL_CENTER, pod, port, docs)
        for peer in (INGRESS_CONTROLLER, PROMETHEUS, STRANGER, neighbour()):
            assert not admitted(peer, pod, port, docs), f"{peer.namespace} reaches the internal listener"
    internal = {pod.owner for pod, _ in targets}
    routed = {pod.owner for ns, svc, port in ingress_backends(docs) for pod, _ in endpoints(docs, ns, svc, port)}
    assert not internal & routed, "an Ingress routes to the internal listener"


def test_each_peer_reaches_exactly_what_it_is_meant_to() -> None:
    docs = manifests()
    metrics = {(f"halobestie-{c}", 9464) for c in ("public", "internal", "worker", "realtime")}
    assert _reachable(INGRESS_CONTROLLER, docs) == {("halobestie-public", 3000), ("halobestie-realtime", 3002)}
    assert _reachable(PROMETHEUS, docs) == metrics
    assert _reachable(CONTROL_CENTER, docs) == {("halobestie-internal", 3001)}


def test_an_arbitrary_namespace_reaches_nothing() -> None:
    docs = manifests()
    declared = {port for pod in pods(docs) for port, _, _ in pod.container_ports()}
    for peer in (STRANGER, neighbour(), Peer("default")):
        for pod in pods(docs):
            for port in sorted(declared | {22, 80, 443, 5432, 6379, 8080}):
                assert not admitted(peer, pod, port, docs), f"{peer.namespace} reaches {pod.owner}:{port}"


# --- one image tag: the kustomization --------------------------------------------------------


def _images(docs: list[Doc]) -> list[str]:
    return [
        c["image"]
        for d in docs
        if d["kind"] in ("Deployment", "Job")
        for c in [
            *d["spec"]["template"]["spec"].get("initContainers", []),
            *d["spec"]["template"]["spec"]["containers"],
        ]
    ]


def test_the_kustomization_lists_every_manifest_but_the_secret_example() -> None:
    listed = kustomization()["resources"]
    on_disk = sorted(p.name for p in K8S.glob("*.y*ml") if p.name != "kustomization.yaml")
    # The example Secret holds placeholders: applying it would overwrite the real one.
    assert sorted(listed) == [n for n in on_disk if n != "secret.example.yaml"]
    assert len(set(listed)) == len(listed)


def test_the_image_tag_is_set_in_one_place() -> None:
    (entry,) = kustomization()["images"]
    assert entry["name"] == IMAGE
    assert entry["newName"]
    assert entry["newTag"]
    images = _images(manifests())
    assert len(images) == 5, images
    assert set(images) == {IMAGE}, images  # a name only: kustomize adds registry and tag
    tag = re.compile(rf"(?<![\w.-]){re.escape(str(entry['newTag']))}(?![\w.-])")
    elsewhere = [p.name for p in K8S.iterdir() if p.name != "kustomization.yaml" and tag.search(p.read_text())]
    assert not elsewhere, f"the tag {entry['newTag']} is repeated in {elsewhere}"


def render() -> list[Doc]:
    """`kustomize build deploy/k8s` for what this kustomization uses: its resources, in order, with
    the images entry applied to every container (name matched without tag or digest)."""
    config = kustomization()
    assert set(config) <= {"apiVersion", "kind", "resources", "images"}, "render() knows only these fields"
    rename = {i["name"]: i for i in config.get("images", [])}
    docs = manifests()
    for d in docs:
        if d["kind"] not in ("Deployment", "Job"):
            continue
        spec = d["spec"]["template"]["spec"]
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            name = re.split(r"@|:(?=[^/]*$)", c["image"])[0]
            if name in rename:
                entry = rename[name]
                suffix = f"@{entry['digest']}" if "digest" in entry else f":{entry['newTag']}"
                c["image"] = entry.get("newName", name) + suffix
    return docs


@pytest.mark.parametrize("version", [[], ["-k", "1.29.0"]], ids=["latest", "oldest-supported"])
def test_the_rendered_kustomization_is_valid_and_pins_the_image(tmp_path: Path, version: list[str]) -> None:
    docs = render()
    entry = kustomization()["images"][0]
    assert set(_images(docs)) == {f"{entry['newName']}:{entry['newTag']}"}
    rendered = tmp_path / "rendered.yaml"
    rendered.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    run = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", *version, str(rendered)],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "WARN" not in run.stdout + run.stderr, run.stdout + run.stderr


def test_kubectl_kustomize_renders_the_same(tmp_path: Path) -> None:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed (render() above stands in for it)")
    run = subprocess.run([kubectl, "kustomize", str(K8S)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr

    def key(d: Doc) -> tuple[str, str]:
        return d["kind"], d["metadata"]["name"]

    theirs = sorted((d for d in yaml.safe_load_all(run.stdout) if d), key=key)
    assert theirs == sorted(render(), key=key)


# --- availability: disruption budgets, topology spread ----------------------------------------


@pytest.mark.parametrize("component", LISTENERS)
def test_a_disruption_budget_keeps_a_listener_up_through_a_drain(component: str) -> None:
    docs = manifests()
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"halobestie-{component}"
    )
    pod = _pod(docs, f"halobestie-{component}")
    budgets = [
        d
        for d in docs
        if d["kind"] == "PodDisruptionBudget"
        and d["metadata"]["namespace"] == pod.namespace
        and selector_matches(d["spec"]["selector"], pod.labels)
    ]
    assert len(budgets) == 1, budgets
    spec = budgets[0]["spec"]
    # It covers this listener only, and one eviction at a time is allowed while another replica serves.
    assert [p.owner for p in pods(docs) if selector_matches(spec["selector"], p.labels)] == [pod.owner]
    replicas = deployment["spec"]["replicas"]
    unavailable = spec["maxUnavailable"] if "maxUnavailable" in spec else replicas - spec["minAvailable"]
    assert isinstance(unavailable, int), (replicas, spec)
    assert 1 <= unavailable < replicas, (replicas, spec)
    assert spec.get("unhealthyPodEvictionPolicy") == "AlwaysAllow"  # a crash-looping pod never blocks a drain


@pytest.mark.parametrize("component", LISTENERS)
def test_replicas_spread_over_zones_and_nodes(component: str) -> None:
    docs = manifests()
    deployment = next(
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == f"halobestie-{component}"
    )
    pod = _pod(docs, deployment["metadata"]["name"])
    constraints = deployment["spec"]["template"]["spec"]["topologySpreadConstraints"]
    assert {c["topologyKey"] for c in constraints} == {"topology.kubernetes.io/zone", "kubernetes.io/hostname"}
    for c in constraints:
        assert c["maxSkew"] == 1
        # Preferred, not required: see DEPLOY.md (nodes without zone labels, two-node drains).
        assert c["whenUnsatisfiable"] == "ScheduleAnyway"
        assert [p.owner for p in pods(docs) if selector_matches(c["labelSelector"], p.labels)] == [pod.owner]


# --- the worker's liveness probe, run ---------------------------------------------------------


def _worker_container() -> Doc:
    deployment = next(
        d for d in manifests() if d["kind"] == "Deployment" and d["metadata"]["name"] == "halobestie-worker"
    )
    container: Doc = deployment["spec"]["template"]["spec"]["containers"][0]
    return container


def _run_probe(probe: Doc, env: dict[str, str]) -> int:
    command = list(probe["exec"]["command"])
    assert command[0] == "python"  # the image's venv python, on PATH
    command[0] = sys.executable
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=probe["timeoutSeconds"] + 5)
    return done.returncode


@pytest.fixture
def fake_metrics() -> Iterator[tuple[int, Gauge]]:
    """A metrics port like the worker's, whose tick gauge the test sets."""
    registry = CollectorRegistry()
    gauge = Gauge("halobestie_worker_last_tick_timestamp_seconds", "When a worker last ran its loop", registry=registry)
    port = free_port()
    server, thread = start_http_server(port, "127.0.0.1", registry=registry)
    yield port, gauge
    server.shutdown()
    thread.join(5)


def test_the_worker_liveness_probe_fails_once_no_job_has_ticked_for_a_while(fake_metrics: tuple[int, Gauge]) -> None:
    live = _worker_container()["livenessProbe"]
    env = {"PATH": os.environ["PATH"], "METRICS_PORT": str(fake_metrics[0])}
    assert _run_probe(live, env) == 1  # no tick yet
    fake_metrics[1].set(time.time() - 2)
    assert _run_probe(live, env) == 0
    fake_metrics[1].set(time.time() - 600)
    assert _run_probe(live, env) == 1
    assert _run_probe(live, {**env, "METRICS_PORT": str(free_port())}) == 1  # nothing answers
    # Not on one slow scrape: several failures in a row, a minute or more, and time for a start.
    assert live["failureThreshold"] * live["periodSeconds"] >= 60
    assert live["initialDelaySeconds"] >= 5
    assert live["timeoutSeconds"] > 3  # the command's own timeout, so a frozen port fails cleanly


def test_the_worker_liveness_probe_passes_on_a_running_worker_and_fails_on_a_frozen_one(settings: Settings) -> None:
    probe = _worker_container()["livenessProbe"]
    port = free_port()
    env = process_env(settings, METRICS_PORT=str(port), LOG_FORMAT="text")
    proc = subprocess.Popen(
        [sys.executable, "-m", "runtime", "worker"],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while _run_probe(probe, env) != 0:
            assert proc.poll() is None, "the worker never passed its probe"
            assert time.monotonic() < deadline, "the worker never passed its probe"
            time.sleep(0.5)
        proc.send_signal(signal.SIGSTOP)  # hung: the probe times out rather than waiting forever
        assert _run_probe(probe, env) == 1
    finally:
        proc.send_signal(signal.SIGCONT)
        # A SIGTERM on the heels of SIGCONT can land on a thread other than the main one, which
        # then never wakes from its untimed wait (seen: 3 of 3 runs); let it settle first.
        time.sleep(0.5)
        stop_process(proc)
