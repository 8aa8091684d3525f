"""Lint (ruff) and strict typing (mypy) run as part of the suite, so CI runs them.

They are skipped only when the tool is not installed and CI does not require
it (ASYNCHDB_REQUIRE_BACKENDS set means a CI-like run: then they must run).
"""

from __future__ import annotations

import ast
import importlib
import subprocess
import sys
from pathlib import Path

import pytest
from plugin import require_tool as _tool

ROOT = Path(__file__).resolve().parent.parent


def test_ruff_clean() -> None:
    _tool("ruff")
    cmd = [sys.executable, "-m", "ruff", "check", "asynchdb", "tests", "benchmarks"]
    proc = subprocess.run(cmd,
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


@pytest.mark.slow
def test_mypy_strict_clean() -> None:
    _tool("mypy")
    proc = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_import_layers_kept() -> None:
    """import-linter: modules import only downward; adapters see only their contract."""
    _tool("importlinter")
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    proc = subprocess.run([sys.executable, "-c", code],
                          cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def _asynchdb_imports(path: Path) -> set[str]:
    """Every asynchdb module ``path`` imports, TYPE_CHECKING blocks included."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "asynchdb")
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against asynchdb._drivers
                base = ["asynchdb", "_drivers"][: 2 - (node.level - 1)]
                found.add(".".join([*base, *(node.module or "").split(".")]).rstrip("."))
            elif node.module and node.module.split(".")[0] == "asynchdb":
                found.add(node.module)
    return found


def test_adapters_import_only_their_contract_even_for_type_checking() -> None:
    """Adapters import the public contract, and shared helpers beside them, nothing else."""
    drivers = sorted((ROOT / "asynchdb" / "_drivers").glob("*.py"))
    assert len(drivers) >= 5
    siblings = {f"asynchdb._drivers.{p.stem}" for p in drivers} | {"asynchdb._drivers"}
    for path in drivers:
        assert _asynchdb_imports(path) <= {"asynchdb.adapters"} | siblings, path.name


@pytest.mark.parametrize("name", ["asynchdb", "asynchdb.adapters", "asynchdb.errors",
                                  "asynchdb.listeners", "asynchdb.status", "asynchdb.oledb",
                                  "asynchdb.testing", "asynchdb.demo", "asynchdb.sqlalchemy"])
def test_public_modules_export_only_public_names(name: str) -> None:
    """Everything a public module defines without a leading underscore is in its ``__all__``,
    and it shows nothing of the engine's private modules under a public name."""
    if name == "asynchdb.sqlalchemy":
        _tool("sqlalchemy")
    mod = importlib.import_module(name)
    exported = set(mod.__all__)
    # the classes and functions it defines (imported names keep their own module)
    defined = {n for n, v in vars(mod).items()
               if not n.startswith("_") and callable(v) and getattr(v, "__module__", "") == name}
    assert defined <= exported, sorted(defined - exported)
    internal = {n for n, v in vars(mod).items()
                if not n.startswith("_") and n not in exported
                and getattr(v, "__module__", "").startswith("asynchdb._")}
    assert internal == set(), sorted(internal)
    for n in exported:
        assert hasattr(mod, n), n


#: Design files kept outside the repository: a reader of the code cannot open them.
_OUTSIDE = ("API" + ".md", "DRIVERS" + ".md", "OLEDB-MODEL" + ".md", "STYLE" + ".md")


def test_nothing_cites_files_outside_the_repository() -> None:
    """Comments and docs point to docs/ (or say the rule), never to the design files."""
    cited = []
    for top in ("asynchdb", "tests", "benchmarks", "docs", "scripts"):
        for path in sorted((ROOT / top).rglob("*")):
            if path.suffix not in (".py", ".md", ".toml", ".ini", ".sh", ".cfg", ".txt") \
                    or "__pycache__" in path.parts:
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            cited += [f"{path.relative_to(ROOT)}: {name}" for name in _OUTSIDE if name in text]
    for name in ("pyproject.toml", "README.md", "tox.ini"):
        text = (ROOT / name).read_text(encoding="utf-8")
        cited += [f"{name}: {n}" for n in _OUTSIDE if n in text]
    assert cited == [], cited
