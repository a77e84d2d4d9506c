"""The staging compose file as `docker compose` resolves it (no daemon needed): what each service
publishes, on which host address, against the proxy-hop setting the listeners trust and the host
Prometheus config that scrapes them."""

from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import PROJECT_ROOT

BIN = Path(sys.executable).parent
CONFIG = ["config", "--format", "json"]
LISTENERS = {"public": 3000, "internal": 3001, "realtime": 3002}


def example_env() -> dict[str, str]:
    lines = (PROJECT_ROOT / ".env.staging.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def compose_config(tmp_path: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """`docker compose config` for docker-compose.staging.yml with `env` as .env.staging (default:
    the example, with the one value it leaves empty and compose requires)."""
    env = {**example_env(), "POSTGRES_PASSWORD": "x"} if env is None else env
    shutil.copy(PROJECT_ROOT / "docker-compose.staging.yml", tmp_path)
    (tmp_path / ".env.staging").write_text("".join(f"{k}={v}\n" for k, v in env.items()))
    run = subprocess.run(
        [str(BIN / "docker-compose"), "-f", "docker-compose.staging.yml", "--env-file", ".env.staging", *CONFIG],
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},  # nothing from this shell interpolates
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stderr
    config: dict[str, Any] = json.loads(run.stdout)
    return config


def test_compose_validates_without_a_daemon(tmp_path: Path) -> None:
    services = compose_config(tmp_path)["services"]
    assert {"postgres", "valkey", "migrate", "public", "internal", "realtime", "worker"} <= set(services)
    internal_ports = services["internal"]["ports"]
    assert internal_ports
    assert all(p.get("host_ip") not in (None, "", "0.0.0.0", "::") for p in internal_ports)
    for name in ("public", "internal", "realtime", "worker"):
        svc = services[name]
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert svc["read_only"] is True
        assert svc["cap_drop"] == ["ALL"]
        assert svc["logging"]["options"]["max-size"]
        assert svc["logging"]["options"]["max-file"]
    for name in ("postgres", "valkey"):
        assert services[name]["healthcheck"]["test"]
        assert services[name]["volumes"]


def _published(service: dict[str, Any], target: int) -> list[str]:
    return [p.get("host_ip", "") for p in service.get("ports", []) if p["target"] == target]


@pytest.mark.parametrize("env", ["example", "defaults"])
def test_each_listener_is_published_only_where_its_proxy_hop_setting_is_true(tmp_path: Path, env: str) -> None:
    """A listener that trusts N >= 1 proxy hops takes X-Forwarded-For from whoever connects: only
    the host's reverse proxy may connect, so it is published on loopback. Checked for the example
    env and for compose's own defaults (the *_BIND lines left out)."""
    values = {**example_env(), "POSTGRES_PASSWORD": "x"}
    if env == "defaults":
        values = {k: v for k, v in values.items() if not k.endswith("_BIND")}
    services = compose_config(tmp_path, values)["services"]
    for name, port in LISTENERS.items():
        hops = int(services[name]["environment"].get("TRUSTED_PROXY_HOPS", "0"))
        addresses = _published(services[name], port)
        assert addresses, f"{name} publishes no port {port}"
        for address in addresses:
            assert address not in ("", "0.0.0.0", "::"), f"{name}:{port} is published on every interface"
            if hops:
                assert ipaddress.ip_address(address).is_loopback, (name, address, hops)


def test_the_host_scrape_config_scrapes_exactly_what_compose_publishes(tmp_path: Path) -> None:
    services = compose_config(tmp_path)["services"]
    published = {}
    for name, service in services.items():
        metrics_port = int(service.get("environment", {}).get("METRICS_PORT") or 0)
        for port in service.get("ports", []):
            if metrics_port and port["target"] == metrics_port:
                assert ipaddress.ip_address(port["host_ip"]).is_loopback, (name, port)  # never public
                published[f"{port['host_ip']}:{port['published']}"] = name
    assert set(published.values()) == {"public", "internal", "worker", "realtime"}
    config = yaml.safe_load((PROJECT_ROOT / "deploy" / "observability" / "prometheus.yml").read_text())
    scraped = {
        target: group["labels"]["component"]
        for job in config["scrape_configs"]
        for group in job["static_configs"]
        for target in group["targets"]
    }
    assert scraped == published
