"""Discovery rules of ARCHITECTURE.md: sorted walk, loud import errors, folder decides surface."""

from __future__ import annotations

import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from lib.endpoint import Auth, Endpoint
from runtime.gateway import discover_frames
from runtime.router import DiscoveryError, discover
from runtime.worker import discover_jobs

HANDLER = '''
"""{doc}"""
from lib.endpoint import Auth, Endpoint

ENDPOINT = Endpoint(method="{method}", route="{route}", auth=Auth.NONE)


def handle(req, ctx):
    return {{}}
'''


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Path]:
    """A throwaway functions package on sys.path, with a unique name so imports never collide."""
    root = tmp_path / f"fn_{uuid.uuid4().hex[:10]}"
    root.mkdir()
    (root / "__init__.py").write_text('"""test tree"""\n')
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [m for m in sys.modules if m == root.name or m.startswith(root.name + ".")]:
        del sys.modules[name]


def write(root: Path, rel: str, text: str) -> None:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text))


def handler(route: str, method: str = "GET", doc: str = "A handler.") -> str:
    return HANDLER.format(route=route, method=method, doc=doc)


def test_discovers_in_sorted_order_and_assigns_surfaces(tree: Path) -> None:
    write(tree, "shared/b.py", handler("/api/shared/b"))
    write(tree, "client/z/a.py", handler("/api/client/z/a"))
    write(tree, "internal/x.py", handler("/internal/x"))
    write(tree, "mitra/a.py", handler("/api/mitra/a", "POST"))
    write(tree, "jobs/tick.py", "this is not a handler and is not imported by the router")
    write(tree, "client/_private.py", "raise SystemExit('underscore files are skipped')")
    write(tree, "client/_helpers/x.py", "raise SystemExit('underscore folders are skipped')")
    routes = discover(tree)
    assert [(r.surface, r.endpoint.route) for r in routes] == [
        ("public", "/api/client/z/a"),
        ("internal", "/internal/x"),
        ("public", "/api/mitra/a"),
        ("public", "/api/shared/b"),
    ]
    assert routes[0].module == f"{tree.name}.client.z.a"


def test_import_error_stops_startup_naming_the_file(tree: Path) -> None:
    write(tree, "client/broken.py", '"""Broken."""\nimport does_not_exist_anywhere\n')
    with pytest.raises(DiscoveryError, match=r"client/broken\.py.*import failed"):
        discover(tree)


def test_module_without_endpoint_fails(tree: Path) -> None:
    write(tree, "client/no_endpoint.py", '"""Nothing."""\ndef handle(req, ctx):\n    return {}\n')
    with pytest.raises(DiscoveryError, match=r"no_endpoint\.py: must define ENDPOINT"):
        discover(tree)


def test_module_without_handle_fails(tree: Path) -> None:
    write(tree, "client/no_handle.py", handler("/api/client/x").replace("def handle", "def other"))
    with pytest.raises(DiscoveryError, match=r"no_handle\.py: must define ENDPOINT = Endpoint\(\.\.\.\) and handle"):
        discover(tree)


def test_module_without_docstring_fails(tree: Path) -> None:
    write(tree, "client/nodoc.py", handler("/api/client/x", doc=""))
    with pytest.raises(DiscoveryError, match="docstring"):
        discover(tree)


@pytest.mark.parametrize(
    ("rel", "route"),
    [
        ("client/x.py", "/api/mitra/x"),
        ("internal/x.py", "/api/shared/x"),
        ("shared/x.py", "/internal/x"),
        ("mitra/x.py", "/api/mitrax/x"),
    ],
)
def test_prefix_must_match_folder(tree: Path, rel: str, route: str) -> None:
    write(tree, rel, handler(route))
    with pytest.raises(DiscoveryError, match="must start with"):
        discover(tree)


def test_duplicate_route_fails_even_with_other_param_names(tree: Path) -> None:
    write(tree, "client/a.py", handler("/api/client/items/{item_id}"))
    write(tree, "client/b.py", handler("/api/client/items/{id}"))
    with pytest.raises(DiscoveryError, match=r"b\.py: GET /api/client/items/\{id\} is already declared"):
        discover(tree)


def test_same_route_other_method_is_fine(tree: Path) -> None:
    write(tree, "client/a.py", handler("/api/client/items"))
    write(tree, "client/b.py", handler("/api/client/items", "POST"))
    assert len(discover(tree)) == 2


def test_unknown_top_folder_fails(tree: Path) -> None:
    write(tree, "admin/x.py", handler("/admin/x"))
    with pytest.raises(DiscoveryError, match="unknown folder"):
        discover(tree)


def test_module_at_top_level_fails(tree: Path) -> None:
    write(tree, "loose.py", handler("/api/client/x"))
    with pytest.raises(DiscoveryError, match="surface folder"):
        discover(tree)


def test_endpoint_has_no_default_auth() -> None:
    with pytest.raises(TypeError):
        Endpoint(method="GET", route="/api/client/x")  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"method": "FETCH", "route": "/api/client/x", "auth": Auth.NONE},
        {"method": "GET", "route": "api/client/x", "auth": Auth.NONE},
        {"method": "GET", "route": "/api/client/x", "auth": "none"},
        {"method": "GET", "route": "/api/client/x", "auth": Auth.CUSTOMER, "permission": "config.read"},
    ],
)
def test_endpoint_declaration_is_checked(kwargs: dict[str, object]) -> None:
    with pytest.raises((ValueError, TypeError)):
        Endpoint(**kwargs)  # type: ignore[arg-type]


def test_project_functions_tree_is_valid() -> None:
    discover()


FRAME_MODULE = '''"""{doc}"""
from lib.frames import Frame

FRAME = Frame(type="{kind}"{options})
{handlers}
'''


def frame_module(kind: str, handlers: str, options: str = "", doc: str = "A frame.") -> str:
    return FRAME_MODULE.format(kind=kind, handlers=handlers, options=options, doc=doc)


def test_frames_are_discovered_with_handle_or_handle_batch(tree: Path) -> None:
    write(tree, "realtime/one.py", frame_module("one", "def handle(ctx): return None"))
    write(tree, "realtime/many.py", frame_module("many", "def handle_batch(ctxs): return [None for _ in ctxs]"))
    found = discover_frames(tree)
    assert sorted(found) == ["many", "one"]
    assert found["many"].batched
    assert not found["one"].batched


@pytest.mark.parametrize(
    ("handlers", "options", "error"),
    [
        ("def handle(ctx): pass\ndef handle_batch(ctxs): pass", "", "handle\\(ctx\\) or handle_batch"),
        ("", "", "handle\\(ctx\\) or handle_batch"),
        ("def handle_batch(ctxs): pass", ", blocking=False", "handle_batch is for blocking frames"),
    ],
)
def test_a_frame_module_needs_exactly_one_handler(tree: Path, handlers: str, options: str, error: str) -> None:
    write(tree, "realtime/odd.py", frame_module("odd", handlers, options))
    with pytest.raises(DiscoveryError, match=error):
        discover_frames(tree)


@pytest.mark.parametrize(
    ("rel", "text", "message"),
    [
        (
            "realtime/both.py",
            '"""Both."""\nfrom lib.frames import Frame\nFRAME = Frame(type="x")\n'
            "def handle(ctx):\n    pass\ndef handle_batch(ctxs):\n    return []\n",
            r"both\.py: must define FRAME = Frame\(\.\.\.\) and handle\(ctx\) or handle_batch\(ctxs\)",
        ),
        (
            "realtime/nodoc.py",
            'from lib.frames import Frame\nFRAME = Frame(type="x")\ndef handle(ctx):\n    pass\n',
            "docstring",
        ),
        (
            "jobs/norun.py",
            '"""No run."""\nfrom lib.jobs import Job\nJOB = Job(every=lambda s: 5.0)\n',
            r"must define JOB = Job\(\.\.\.\) and run\(ctx\)",
        ),
        (
            "jobs/nodoc.py",
            "from lib.jobs import Job\nJOB = Job(every=lambda s: 5.0)\ndef run(ctx):\n    pass\n",
            "docstring",
        ),
    ],
)
def test_frames_and_jobs_keep_the_endpoints_rule(tree: Path, rel: str, text: str, message: str) -> None:
    """One check (runtime/router.check_module) for every discovered module: its declaration, one
    handler, a docstring."""
    write(tree, rel, text)
    find = discover_jobs if rel.startswith("jobs/") else discover_frames
    with pytest.raises(DiscoveryError, match=message):
        find(tree)
