"""The documentation site builds with ``mkdocs build --strict``, and its charts are current.

The strict build fails on a broken link or anchor, a docstring mkdocstrings
cannot read, an API name the reference page points at that does not exist, and
a page in ``docs/`` missing from the nav (``mkdocs.yml``).  mkdocs is in the
test extra, so CI runs this; elsewhere it is skipped without mkdocs.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from plugin import require_tool

ROOT = Path(__file__).resolve().parent.parent
#: Seconds the build may take at most (about 10 s on the loaded 2-CPU machine).
BUILD_LIMIT = 240


@pytest.mark.slow
def test_mkdocs_build_strict(tmp_path: Path) -> None:
    require_tool("mkdocs")
    require_tool("material")
    require_tool("mkdocstrings_handlers.python")
    env = dict(os.environ, PYTHONPATH=str(ROOT), NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=BUILD_LIMIT)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for page in ("index.html", "reference/index.html", "performance/index.html",
                 "cli/index.html", "oledb/index.html", "drivers/index.html"):
        assert (tmp_path / page).exists(), page
    reference = (tmp_path / "reference" / "index.html").read_text()
    for name in ("asynchdb.connect", "asynchdb.Operation.abort", "asynchdb.Cursor.execute",
                 "asynchdb.adapters.Adapter"):
        assert f'id="{name}"' in reference, name
    # Sphinx roles are turned into code spans by scripts/mkdocs_hooks.py
    assert ":class:" not in reference and ":meth:" not in reference


def test_every_chart_on_the_performance_page_exists() -> None:
    page = (ROOT / "docs" / "performance.md").read_text()
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", page)
    assert len(images) >= 6
    for image in images:
        assert (ROOT / "docs" / image).is_file(), image


def test_the_charts_cover_every_recorded_backend() -> None:
    from benchmarks.plots import load

    ratios = load()
    backends = {r.backend for r in ratios}
    page = (ROOT / "docs" / "performance.md").read_text()
    for backend in backends:
        assert f"img/performance/{backend}.png" in page, backend
    assert all(r.ratio > 0 for r in ratios)


def test_the_plot_command_draws_a_chart(tmp_path: Path) -> None:
    if importlib.util.find_spec("matplotlib") is None:
        pytest.skip("matplotlib not installed (the docs extra)")
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.plots", "--out", str(tmp_path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    pngs = sorted(p.name for p in tmp_path.glob("*.png"))
    assert "sqlite3.png" in pngs
    assert all((tmp_path / p).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs)
