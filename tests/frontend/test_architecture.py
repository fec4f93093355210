"""The UI talks to the service over HTTP only: no module of ``frontend`` imports the backend
or the training library (an AST scan, so even imports inside functions are caught)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

FRONTEND = Path(__file__).resolve().parents[2] / "frontend"
FORBIDDEN = ("backend", "pmtl_core")
MODULES = sorted(FRONTEND.rglob("*.py"))


def imported_roots(source: str) -> set[str]:
    """Top-level package names imported anywhere in ``source`` (absolute imports only)."""
    roots: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            roots.add(node.module.split(".")[0])
        elif (
            isinstance(node, ast.Call)
            and getattr(node.func, "attr", "") == "import_module"
            and node.args
            and isinstance(node.args[0], ast.Constant)
        ):
            roots.add(str(node.args[0].value).split(".")[0])
    return roots


def test_the_scan_sees_the_ui():
    names = {p.relative_to(FRONTEND).as_posix() for p in MODULES}
    assert {"streamlit_app.py", "cli.py", "lib/api_client.py", "app_pages/run_detail.py"} <= names


@pytest.mark.parametrize("path", MODULES, ids=lambda p: p.relative_to(FRONTEND).as_posix())
def test_frontend_module_does_not_import_backend_or_library(path: Path):
    roots = imported_roots(path.read_text(encoding="utf-8"))
    assert not roots & set(FORBIDDEN), f"{path} imports {sorted(roots & set(FORBIDDEN))}"


def test_the_scan_catches_nested_and_dynamic_imports():
    source = (
        "def f():\n    from backend.app import main\n"
        "import importlib\nimportlib.import_module('pmtl_core.export')\n"
    )
    assert {"backend", "pmtl_core"} <= imported_roots(source)
