"""README "Where a handler's tests are" stays true: every handler folder has a row, and its files name each handler."""

from __future__ import annotations

import re
from pathlib import Path

from runtime.app import route_table
from runtime.gateway import discover_frames
from runtime.router import module_files
from runtime.worker import discover_jobs
from tests.conftest import PROJECT_ROOT

SECTION = "## Where a handler's tests are"
ROW = re.compile(r"^\| `(functions/[^`]*)` \| (.+) \|$")
PARAM = re.compile(r"\{[^}]*\}")
HELPER = re.compile(r"^from (tests(?:\.\w+)+) import", re.MULTILINE)


def readme_table() -> dict[str, list[Path]]:
    text = (PROJECT_ROOT / "README.md").read_text()
    assert SECTION in text, f"README lost its section {SECTION!r}"
    section = text.split(SECTION, 1)[1].split("\n## ", 1)[0]
    table: dict[str, list[Path]] = {}
    for line in section.splitlines():
        if match := ROW.match(line):
            folder, cells = match.groups()
            assert folder not in table, f"{folder} has two rows"
            table[folder] = [PROJECT_ROOT / cell.strip(" `") for cell in cells.split(",")]
    return table


def listed_text(paths: list[Path]) -> str:
    """The text of every listed test file (a folder: its test files) and of the test helpers each imports."""
    texts = []
    for path in paths:
        for file in sorted(path.rglob("test_*.py")) if path.is_dir() else [path]:
            text = file.read_text()
            helpers = [(PROJECT_ROOT / Path(*name.split("."))).with_suffix(".py") for name in HELPER.findall(text)]
            texts += [text, *(h.read_text() for h in helpers if h.exists())]
    return "\n".join(texts)


def marker(route: str) -> str:
    """What a test that requests the route must spell: its last literal part (paths are built from pieces)."""
    pieces = [piece for piece in PARAM.split(route) if piece]
    return pieces[-1]


def handler_markers() -> dict[str, list[tuple[str, str]]]:
    """Handler folder -> (module, text a test of it must contain) for every endpoint, frame and job."""
    folders: dict[str, list[tuple[str, str]]] = {}

    def add(dotted: str, text: str) -> None:
        folder = "/".join(dotted.split(".")[:-1]) + "/"
        folders.setdefault(folder, []).append((dotted, text))

    for row in route_table():
        _, _, route, _, module = row.split()
        if module.startswith("functions."):
            add(module, marker(route))
    for frame_type, found in discover_frames().items():
        add(found.module.__name__, f'"{frame_type}"')
    for job in discover_jobs():
        add(f"functions.jobs.{job.name}", job.name)
    return folders


def test_every_handler_folder_has_one_row_and_every_listed_file_exists() -> None:
    table = readme_table()
    folders = {"/".join(dotted.split(".")[:-1]) + "/" for dotted, _ in module_files(PROJECT_ROOT / "functions")}
    assert sorted(folders - table.keys()) == [], "handler folders missing from the README table"
    assert sorted(table.keys() - folders) == [], "README rows for folders that hold no handler"
    missing = [str(p.relative_to(PROJECT_ROOT)) for paths in table.values() for p in paths if not p.exists()]
    assert missing == []


def test_the_listed_files_exercise_every_handler_of_their_folder() -> None:
    table = readme_table()
    unnamed = []
    for folder, handlers in handler_markers().items():
        text = listed_text(table[folder])
        unnamed += [f"{module} ({spelled!r})" for module, spelled in handlers if spelled not in text]
    assert unnamed == [], "handlers none of their README row's files request"


def test_marker_is_the_last_literal_part() -> None:
    assert marker("/internal/users/{user_id:uuid}/reset-password") == "/reset-password"
    assert marker("/internal/mitras/{mitra_id:uuid}") == "/internal/mitras/"
    assert marker("/api/client/me") == "/api/client/me"
