"""The import graph reads one way: the job vocabulary at the bottom, the SQL seam above
it, the worker and the app above that (see the layers in the README's Development part)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

CHANCY = Path(__file__).resolve().parents[2] / "chancy"

# Each bottom module and the chancy modules it may import (leaves that import only errors).
BOTTOM = {
    "errors": set(),
    "states": set(),
    "events": set(),
    "control": set(),
    "callables": {"chancy.errors"},
    "queue": {"chancy.errors"},
    "payloads": {"chancy.errors"},
    "jobs": {
        "chancy.errors",
        "chancy.states",
        "chancy.callables",
        "chancy.queue",
        "chancy.payloads",
    },
}


def chancy_imports(path: Path) -> set[str]:
    """The chancy modules ``path`` imports, at run time or for type checking alike."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("chancy"):
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("chancy"))
    return found


@pytest.mark.parametrize("module", sorted(BOTTOM))
def test_bottom_modules_import_only_the_bottom(module: str) -> None:
    assert chancy_imports(CHANCY / f"{module}.py") <= BOTTOM[module]


def loaded_after_import(module: str) -> set[str]:
    code = f"import sys, {module}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    return {name for name in out.split() if name.startswith("chancy")}


def test_importing_the_repository_loads_no_executor_worker_or_app() -> None:
    loaded = loaded_after_import("chancy.repository")
    above = {"chancy.executor", "chancy.worker", "chancy.app", "chancy.services", "chancy.cli"}
    assert not {
        name for name in loaded for upper in above if name == upper or name.startswith(f"{upper}.")
    }


def test_importing_the_jobs_loads_no_database_layer() -> None:
    loaded = loaded_after_import("chancy.jobs")
    assert loaded <= {f"chancy.{name}" for name in BOTTOM} | {"chancy"}
