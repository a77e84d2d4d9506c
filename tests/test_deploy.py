"""Deployment artefacts, checked without a Docker engine: the Dockerfile, .dockerignore, the staging
compose file, the Kubernetes manifests, and the image's runtime contents built and run as the image
would (wheels into a fresh venv, started as a non-root user)."""

from __future__ import annotations

import fnmatch
import os
import pwd
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from psycopg.conninfo import conninfo_to_dict

from lib.config.env import Settings
from runtime.app import route_table
from tests.conftest import PROJECT_ROOT, TEST_SECRET
from tests.helpers import free_port, wait_http

BIN = Path(sys.executable).parent
K8S = PROJECT_ROOT / "deploy" / "k8s"


def test_hadolint_reports_nothing() -> None:
    run = subprocess.run([str(BIN / "hadolint"), "Dockerfile"], cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stdout
    assert run.stdout == "", run.stdout


def test_dockerfile_shape() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    stages = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert len(stages) == 2
    assert "AS build" in stages[0]
    assert "slim" in stages[1]
    assert "ARG PYTHON_VERSION=3.11" in text  # the same minor as requires-python's floor
    assert 'requires-python = ">=3.11"' in (PROJECT_ROOT / "pyproject.toml").read_text()
    build, runtime = text.split(stages[0])[1].split(stages[1])[0], text.split(stages[1])[1]
    # Dependencies only from the lock, every file checked against its hash; the project adds none.
    assert "pip wheel --require-hashes --wheel-dir /wheels -r requirements.lock" in build
    assert "pip wheel --no-deps --wheel-dir /wheels ." in build
    assert "--no-index --no-deps /wheels/*.whl" in runtime
    assert "pip check" in runtime
    assert "--no-index" in runtime
    assert "apt-get" not in runtime
    assert "gcc" not in runtime
    assert "USER 10001:10001" in runtime
    assert "PYTHONDONTWRITEBYTECODE=1" in runtime
    assert 'ENTRYPOINT ["python", "-m", "runtime"]' in runtime
    assert "HEALTHCHECK" in runtime


def _runtime_env() -> dict[str, str]:
    """The ENV the runtime stage sets, as Docker reads it (continued lines, KEY=VALUE pairs)."""
    text = (PROJECT_ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    runtime = text.split("AS runtime", 1)[1]
    env: dict[str, str] = {}
    for line in runtime.splitlines():
        if line.startswith("ENV "):
            env |= dict(pair.split("=", 1) for pair in shlex.split(line[4:]))
    return env


def test_base_images_are_pinned_by_digest_and_say_how_to_move_them() -> None:
    """Each FROM takes its digest from an ARG whose default is a sha256 digest (the tag alone would
    let a rebuild pick up another image), and the Dockerfile says how to move it."""
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    froms = [line for line in text.splitlines() if line.startswith("FROM ")]
    assert [line.split()[1] for line in froms] == [
        "python:${PYTHON_VERSION}-bookworm${BUILD_IMAGE_DIGEST}",
        "python:${PYTHON_VERSION}-slim-bookworm${RUNTIME_IMAGE_DIGEST}",
    ]
    for name in ("BUILD_IMAGE_DIGEST", "RUNTIME_IMAGE_DIGEST"):
        default = re.search(rf'^ARG {name}="(.*)"$', text, re.M)
        assert default, name
        assert re.fullmatch(r"@sha256:[0-9a-f]{64}", default[1]), name
    assert "docker buildx imagetools inspect" in text


def test_the_build_revision_is_a_build_argument() -> None:
    text = (PROJECT_ROOT / "Dockerfile").read_text()
    runtime = text.split("AS runtime", 1)[1]
    assert "ARG GIT_REVISION=unknown" in runtime
    assert "ENV GIT_REVISION=${GIT_REVISION}" in runtime
    deploy = (PROJECT_ROOT / "DEPLOY.md").read_text()
    assert "--build-arg GIT_REVISION=$(git rev-parse --short HEAD)" in deploy


def test_the_image_defaults_to_production() -> None:
    """A container started without APP_ENV is a real deployment: no development routes or stubs."""
    assert _runtime_env()["APP_ENV"] == "production"
    assert Settings().app_env == "production"  # and so is the code's own default


def _docker_context(root: Path) -> set[str]:
    """Files a Docker build would send, by .dockerignore's rules (last matching line wins)."""
    rules = [
        r.strip() for r in (root / ".dockerignore").read_text().splitlines() if r.strip() and not r.startswith("#")
    ]
    sent = set()
    # os.walk skips what vanishes meanwhile: the suite's own embedded servers write under .dev/.
    files = (Path(d, f) for d, dirs, names in os.walk(root) if ".venv" not in Path(d).parts for f in names)
    for path in files:
        rel = path.relative_to(root).as_posix()
        keep = True
        for rule in rules:
            negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
            matched = any(
                fnmatch.fnmatch(candidate, pattern) or fnmatch.fnmatch(candidate, pattern.replace("**/", ""))
                for candidate in [rel, *("/".join(rel.split("/")[: i + 1]) for i in range(rel.count("/")))]
            )
            if pattern.startswith("**/"):
                matched = matched or any(fnmatch.fnmatch(part, pattern[3:]) for part in rel.split("/"))
            if matched:
                keep = negate
        if keep:
            sent.add(rel)
    return sent


def test_dockerignore_keeps_the_context_small_and_secret_free(tmp_path: Path) -> None:
    sent = _docker_context(PROJECT_ROOT)
    assert "pyproject.toml" in sent
    assert "runtime/app.py" in sent
    assert "migrations/0001_app_config.sql" in sent
    assert "requirements.lock" in sent
    assert "requirements-dev.lock" not in sent
    for forbidden in (".git/", ".env", "tests/", ".dev/", "bench/", "__pycache__", ".mypy_cache/", "deploy/"):
        assert not [s for s in sent if s.startswith(forbidden) or f"/{forbidden}" in s], forbidden


def _manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_manifests_validate_against_the_kubernetes_schema() -> None:
    # kustomization.yaml is kustomize's, not the cluster's: tests/test_k8s.py validates its rendering.
    files = [str(p) for p in sorted(K8S.glob("*.yaml")) if p.name != "kustomization.yaml"]
    run = subprocess.run(
        [str(BIN / "kubernetes-validate"), "--strict", "--quiet", *files],
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr


def test_pods_are_locked_down_and_shut_down_gracefully() -> None:
    workloads = [d for d in _manifests() if d["kind"] in ("Deployment", "Job")]
    assert {d["metadata"]["name"] for d in workloads} >= {
        "halobestie-public",
        "halobestie-internal",
        "halobestie-realtime",
        "halobestie-worker",
        "halobestie-migrate",
    }
    for d in workloads:
        pod = d["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
        for c in pod["containers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True
            assert sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]
            assert c["resources"]["limits"]
        if d["kind"] == "Deployment":
            assert pod["terminationGracePeriodSeconds"] > Settings().graceful_timeout + 5  # + preStop
            container = pod["containers"][0]
            if any(port["name"] == "http" for port in container.get("ports", [])):  # the worker serves none
                assert container["livenessProbe"]["httpGet"]["path"] == "/health"
                assert container["readinessProbe"]["httpGet"]["path"] == "/ready"


def test_internal_has_no_ingress_and_is_fenced() -> None:
    docs = _manifests()
    backends = [
        p["backend"]["service"]["name"]
        for d in docs
        if d["kind"] == "Ingress"
        for rule in d["spec"]["rules"]
        for p in rule["http"]["paths"]
    ]
    assert backends
    assert "halobestie-internal" not in backends
    ws = [
        (p["path"], p["backend"]["service"]["name"], d["metadata"]["annotations"])
        for d in docs
        if d["kind"] == "Ingress"
        for rule in d["spec"]["rules"]
        for p in rule["http"]["paths"]
        if p["path"] == "/api/shared/ws"
    ]
    assert len(ws) == 1
    assert ws[0][1] == "halobestie-realtime"
    assert int(ws[0][2]["nginx.ingress.kubernetes.io/proxy-read-timeout"]) >= 600
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    assert any(
        p["spec"]["podSelector"]["matchLabels"].get("app.kubernetes.io/component") == "internal" for p in policies
    )


def _world_readable(path: Path) -> bool:
    real = path.resolve()
    return all(os.stat(p).st_mode & 0o005 == 0o005 for p in [*real.parents, real])


def _python_for_the_image() -> str:
    """A Python 3.11+ a non-root user can run (the image's is /usr/local/bin/python; pyenv's under
    /root is not readable by others), so the venv below behaves like the image's /opt/venv."""
    for candidate in ("/usr/local/bin/python3.11", "/usr/bin/python3.11", sys.executable):
        if Path(candidate).exists() and _world_readable(Path(candidate)):
            return candidate
    pytest.skip("no Python readable by an unprivileged user on this machine")


@pytest.fixture(scope="module")
def image_venv() -> Iterator[Path]:
    """What the Dockerfile's runtime stage holds: the project's wheels installed into a fresh venv."""
    # Not under pytest's tmp dir: that is private to root, and the image runs as another user.
    work = Path(tempfile.mkdtemp(prefix="hb-image-"))
    work.chmod(0o755)
    context = work / "context"
    for rel in sorted(_docker_context(PROJECT_ROOT)):
        (context / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(PROJECT_ROOT / rel, context / rel)
    # Like the two stages: the lock's wheels (hashes required) and the project's built by one
    # interpreter, then all of them and nothing else installed into a fresh venv of the same.
    python = _python_for_the_image()
    builder, wheels, venv = work / "build-venv", work / "wheels", work / "venv"
    subprocess.run([python, "-m", "venv", str(builder)], check=True)
    pip_wheel = [str(builder / "bin/pip"), "wheel", "--quiet", "--wheel-dir", str(wheels)]
    lock = str(context / "requirements.lock")
    subprocess.run([*pip_wheel, "--require-hashes", "-r", lock], check=True, timeout=900)
    subprocess.run([*pip_wheel, "--no-deps", str(context)], check=True, timeout=300)
    subprocess.run([python, "-m", "venv", str(venv)], check=True)
    pip = str(venv / "bin/pip")
    subprocess.run([pip, "install", "--quiet", "--no-index", "--no-deps", *map(str, wheels.glob("*.whl"))], check=True)
    subprocess.run([pip, "check"], check=True, timeout=120)
    for path in [work, *work.rglob("*")]:  # readable by anyone, writable by no one: like a read-only image
        if path.is_symlink():
            continue  # chmod would follow it to the interpreter outside the venv
        mode = path.stat().st_mode
        path.chmod((mode | 0o555) & ~0o222 if path.is_dir() else (mode | 0o444) & ~0o222)
    yield venv
    for path in [work, *work.rglob("*")]:
        if not path.is_symlink():
            path.chmod(path.stat().st_mode | 0o200)
    shutil.rmtree(work, ignore_errors=True)


# The first test to use image_venv builds it: every locked dependency as a wheel, checked against its
# hash, gunicorn-h1c compiled from its sdist. Over the suite's 120 s on a loaded machine (one fresh
# clone's run timed out there); the subprocess timeouts in the fixture bound it instead.
IMAGE_BUILD_TIMEOUT = pytest.mark.timeout(1200)


@IMAGE_BUILD_TIMEOUT
def test_image_contents_hold_every_module_and_migration(image_venv: Path) -> None:
    def image_python(*args: str) -> str:
        # Outside any checkout, with nothing from this shell: GIT_REVISION is not set either.
        run = subprocess.run(
            [str(image_venv / "bin/python"), *args],
            cwd="/",
            capture_output=True,
            text=True,
            check=True,
            env={"PATH": "/usr/bin:/bin"},
        )
        return run.stdout.strip()

    assert image_python("-m", "runtime", "routes").splitlines() == route_table()
    migrations = image_python("-c", "from runtime.migrate import load; print(len(load()))")
    assert int(migrations) == len(list((PROJECT_ROOT / "migrations").glob("*.sql")))
    # Built without GIT_REVISION and run outside a checkout: the revision is unknown, never a guess.
    assert image_python("-c", "from lib.metrics import version; print(version())") == "0.1.0+unknown"


@IMAGE_BUILD_TIMEOUT
def test_image_serves_as_a_non_root_user(image_venv: Path, settings: Settings) -> None:
    nobody = pwd.getpwnam("nobody")
    port, metrics_port = free_port(), free_port()
    env = {
        "GIT_REVISION": "0123abc",  # what the Dockerfile's ENV holds when built with --build-arg
        "METRICS_PORT": str(metrics_port),
        "PATH": f"{image_venv}/bin:/usr/bin:/bin",
        "DATABASE_URL": settings.database_url,
        "REDIS_URL": settings.redis_url,
        "AUTH_JWT_SECRET": TEST_SECRET,
        "APP_ENV": "test",
        "PYTHONDONTWRITEBYTECODE": "1",
        "WEB_CONCURRENCY": "1",
        "PUBLIC_PORT": str(port),
        "HOME": "/nonexistent",
    }

    def drop() -> None:
        os.setgid(nobody.pw_gid)
        os.setgroups([])
        os.setuid(nobody.pw_uid)

    proc = subprocess.Popen(
        [str(image_venv / "bin/python"), "-m", "runtime", "serve", "public"],
        cwd="/",
        env=env,
        preexec_fn=drop if os.geteuid() == 0 else None,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert wait_http(f"http://127.0.0.1:{port}/health").status_code == 200
        ready = requests.get(f"http://127.0.0.1:{port}/ready", timeout=5)
        if str(conninfo_to_dict(settings.database_url).get("host", "")).startswith("/"):
            # The embedded server's socket directory is private to root: `nobody` cannot reach it,
            # and the listener must say so in the envelope rather than fail.
            assert ready.status_code == 503
            assert ready.json()["error"]["details"]["database"] == "down"
        else:
            assert ready.json()["data"]["database"] == "up"
        health = subprocess.run([str(image_venv / "bin/python"), "-m", "runtime.healthcheck"], env=env, cwd="/")
        assert health.returncode == 0
        scrape = requests.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).text
        assert 'halobestie_build_info{process="public",version="0.1.0+0123abc"} 1.0' in scrape
    finally:
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
