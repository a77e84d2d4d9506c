"""deploy/observability: the alert rules and scrape config valid (promtool, where it installs:
.ci/run installs Debian's `prometheus`), the rules firing on the series they are for
(alerts.test.yml), and every metric the rules and the dashboard read is one lib/metrics.py exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from lib.metrics import exported_families
from tests.conftest import PROJECT_ROOT

OBS = Path(PROJECT_ROOT) / "deploy" / "observability"
K8S = Path(PROJECT_ROOT) / "deploy" / "k8s"
NAME = re.compile(r"\bhalobestie_[a-z_]+")
promtool = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(promtool is None, reason="promtool not installed (Debian package prometheus)")


def exported() -> set[str]:
    """Every sample name lib/metrics.py can produce."""
    names: set[str] = set()
    for family in exported_families():
        base, kind = family.name, family.type
        names |= {
            "counter": {f"{base}_total"},
            "histogram": {f"{base}_bucket", f"{base}_count", f"{base}_sum"},
            "gauge": {base},
        }[kind]
    return names


def _exprs() -> list[str]:
    rules = yaml.safe_load((OBS / "alerts.yml").read_text())
    found = [r["expr"] for g in rules["groups"] for r in g["rules"]]
    dashboard = json.loads((OBS / "dashboard.json").read_text())
    found += [t["expr"] for p in dashboard["panels"] for t in p["targets"]]
    return found


@needs_promtool
@pytest.mark.parametrize(
    "args",
    [["check", "rules", "alerts.yml"], ["test", "rules", "alerts.test.yml"], ["check", "config", "prometheus.yml"]],
)
def test_promtool_accepts_the_files(args: list[str]) -> None:
    assert promtool is not None
    run = subprocess.run([promtool, *args], cwd=OBS, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stdout + run.stderr


def test_rules_and_dashboard_read_only_exported_metrics() -> None:
    names = exported()
    used = {name for expr in _exprs() for name in NAME.findall(expr)}
    assert used, "no expression names a metric"
    assert used <= names, sorted(used - names)
    # Every alert the issue asks for is there.
    rules = yaml.safe_load((OBS / "alerts.yml").read_text())
    alerts = {r["alert"] for g in rules["groups"] for r in g["rules"]}
    assert alerts == {
        "HaloBestieWebhookUnauthorizedSpike",
        "HaloBestieWebhookFailures",
        "HaloBestiePairingFailureRate",
        "HaloBestieDeadlineLate",
        "HaloBestieDbPoolExhausted",
        "HaloBestieValkeyDown",
        "HaloBestieWorkerStalled",
        "HaloBestieRefundDueOverADay",
        "HaloBestiePaymentsUnaccounted",
    }


def test_the_operator_rules_are_a_copy_of_alerts_yml() -> None:
    docs = list(yaml.safe_load_all((OBS / "podmonitor.yaml").read_text()))
    rule = next(d for d in docs if d["kind"] == "PrometheusRule")
    assert rule["spec"]["groups"] == yaml.safe_load((OBS / "alerts.yml").read_text())["groups"]
    monitor = next(d for d in docs if d["kind"] == "PodMonitor")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"


def test_every_process_exposes_its_metrics_port_to_the_monitoring_namespace() -> None:
    config = yaml.safe_load((K8S / "10-config.yaml").read_text())
    assert config["data"]["METRICS_PORT"] == "9464"
    for name in ("30-public.yaml", "31-internal.yaml", "32-worker.yaml", "33-realtime.yaml"):
        deployment = next(d for d in yaml.safe_load_all((K8S / name).read_text()) if d["kind"] == "Deployment")
        ports = deployment["spec"]["template"]["spec"]["containers"][0]["ports"]
        assert {"name": "metrics", "containerPort": 9464} in ports, name
    policies = list(yaml.safe_load_all((K8S / "50-networkpolicy.yaml").read_text()))
    scrape = next(p for p in policies if p["metadata"]["name"] == "halobestie-metrics-from-monitoring")
    assert scrape["spec"]["ingress"][0]["ports"] == [{"protocol": "TCP", "port": 9464}]
