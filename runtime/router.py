"""Strict discovery of endpoint modules under functions/: the folder decides the surface."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from lib.endpoint import Endpoint

FUNCTIONS_DIR = Path(__file__).resolve().parent.parent / "functions"

# top folder -> (surface, required route prefix)
SURFACES: dict[str, tuple[str, str]] = {
    "client": ("public", "/api/client/"),
    "mitra": ("public", "/api/mitra/"),
    "shared": ("public", "/api/shared/"),
    "internal": ("internal", "/internal/"),
}
NON_HTTP_FOLDERS = frozenset({"jobs", "realtime"})  # discovered by the worker and the gateway

Handle = Callable[..., Any]


class DiscoveryError(RuntimeError):
    """A handler module breaks the rules; start-up stops and names the file."""


@dataclass(frozen=True)
class Route:
    surface: str
    endpoint: Endpoint
    handle: Handle
    module: str

    @property
    def key(self) -> tuple[str, str]:
        # {id} and {session_id} are the same route to the router: compare the shape only.
        return self.endpoint.method, re.sub(r"\{[^}]*\}", "{}", self.endpoint.route)


def module_files(root: Path, top: Iterable[str] | None = None) -> list[tuple[str, Path]]:
    """Every importable module under root (names starting with _ or . skipped), in sorted order."""
    found: list[tuple[str, Path]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(("_", ".")))
        rel = Path(dirpath).relative_to(root)
        if top is not None and rel.parts and rel.parts[0] not in top:
            dirnames[:] = []
            continue
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith(("_", ".")):
                dotted = ".".join((root.name, *rel.parts, name[:-3]))
                found.append((dotted, Path(dirpath) / name))
    return found


def load_module(dotted: str, path: Path) -> ModuleType:
    try:
        return importlib.import_module(dotted)
    except Exception as exc:  # re-raised with the file named; never swallowed
        raise DiscoveryError(f"{path}: import failed: {exc!r}") from exc


def check_endpoint_module(module: ModuleType, path: Path) -> tuple[Endpoint, Handle]:
    endpoint = getattr(module, "ENDPOINT", None)
    handle = getattr(module, "handle", None)
    if not isinstance(endpoint, Endpoint):
        raise DiscoveryError(f"{path}: must define ENDPOINT = Endpoint(...)")
    if not callable(handle):
        raise DiscoveryError(f"{path}: must define handle(req, ctx)")
    if not (module.__doc__ or "").strip():
        raise DiscoveryError(f"{path}: needs a one-line module docstring")
    return endpoint, handle


def discover(root: Path = FUNCTIONS_DIR) -> list[Route]:
    """Import every handler module and check the rules of ARCHITECTURE.md."""
    routes: list[Route] = []
    seen: dict[tuple[str, str], str] = {}
    for entry in sorted(p.name for p in root.iterdir()):
        if entry.startswith(("_", ".")):
            continue
        if (root / entry).is_file() and entry.endswith(".py"):
            raise DiscoveryError(
                f"{root / entry}: handler modules live in a surface folder ({', '.join(sorted(SURFACES))})"
            )
        if (root / entry).is_dir() and entry not in SURFACES and entry not in NON_HTTP_FOLDERS:
            raise DiscoveryError(
                f"{root / entry}: unknown folder; expected one of {', '.join(sorted([*SURFACES, *NON_HTTP_FOLDERS]))}"
            )
    for dotted, path in module_files(root, top=SURFACES):
        folder = path.relative_to(root).parts[0]
        surface, prefix = SURFACES[folder]
        endpoint, handle = check_endpoint_module(load_module(dotted, path), path)
        if not endpoint.route.startswith(prefix):
            raise DiscoveryError(
                f"{path}: route {endpoint.route} must start with {prefix} "
                f"(the {folder}/ folder serves the {surface} app)"
            )
        route = Route(surface, endpoint, handle, dotted)
        if route.key in seen:
            raise DiscoveryError(f"{path}: {endpoint.method} {endpoint.route} is already declared by {seen[route.key]}")
        seen[route.key] = dotted
        routes.append(route)
    return routes
