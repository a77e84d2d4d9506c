"""Strict discovery of endpoint modules under functions/: the folder decides the surface."""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

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
Declared = TypeVar("Declared")


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


def check_module(
    module: ModuleType, path: Path, declaration: str, kind: type[Declared], handlers: tuple[str, ...], shape: str
) -> tuple[Declared, str]:
    """The rule every discovered module keeps, endpoint, frame or job (ARCHITECTURE.md): a
    `declaration` of `kind`, exactly one of `handlers`, and a one-line docstring. Returns the
    declaration and the name of the handler it defines."""
    declared = getattr(module, declaration, None)
    present = [name for name in handlers if callable(getattr(module, name, None))]
    if not isinstance(declared, kind) or len(present) != 1:
        raise DiscoveryError(f"{path}: must define {declaration} = {kind.__name__}(...) and {shape}")
    if not (module.__doc__ or "").strip():
        raise DiscoveryError(f"{path}: needs a one-line module docstring")
    return declared, present[0]


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
        module = load_module(dotted, path)
        endpoint, _ = check_module(module, path, "ENDPOINT", Endpoint, ("handle",), "handle(req, ctx)")
        handle = module.handle
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
