"""The performance page's plots: ``python -m benchmarks.plots``.

Reads the recorded results (``benchmarks/results/sqlite3.json``,
``population.json`` and ``drivers.json``), takes every comparison they hold
(asynchdb against the raw driver or against what a user would write instead,
as a ratio of medians, with the interquartile range of the per-repetition
ratios where recorded) and draws
one horizontal bar chart per backend into ``docs/img/performance/``, plus the
population benchmark's ratios.  A ratio below 1 means asynchdb took less time
than the baseline; the dotted mark is the target the benchmark set itself.

Nothing is measured here: run ``python -m benchmarks`` first to refresh the
JSON files.  The figures are committed, so building the documentation needs no
matplotlib.  Needs: ``pip install matplotlib`` (in the ``docs`` extra).
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
OUT = HERE.parent / "docs" / "img" / "performance"


@dataclass
class Ratio:
    """One comparison: ``of`` took ``ratio`` times what ``to`` took (medians)."""

    backend: str
    bench: str      # "P1"
    label: str      # what was run
    of: str
    to: str
    ratio: float
    low: Optional[float]
    high: Optional[float]
    target: Optional[float]


def _comparisons(backend: str, bench: str, block: dict[str, Any], label: str) -> list[Ratio]:
    out = []
    for c in block.get("comparisons") or []:
        if c.get("stat", "median") != "median" or c.get("ratio") is None:
            continue
        per = c.get("per_rep") or {}
        out.append(Ratio(backend, bench, label, c["of"], c["to"], float(c["ratio"]),
                         per.get("p25"), per.get("p75"), c.get("target")))
    return out


def _from_benchmarks(backend: str, benches: dict[str, Any]) -> list[Ratio]:
    out: list[Ratio] = []
    for bench, data in benches.items():
        if not isinstance(data, dict):
            continue
        queries = data.get("queries")
        if isinstance(queries, dict):
            for name, q in queries.items():
                label = q.get("label") or q.get("sql") or name
                out += _comparisons(backend, bench, q, label)
        else:
            title = str(data.get("title") or data.get("sql") or "")
            out += _comparisons(backend, bench, data, title.partition(": ")[2] or title)
    return out


def load(results: Path = RESULTS) -> list[Ratio]:
    """Every median comparison in the recorded results."""
    ratios: list[Ratio] = []
    sqlite = results / "sqlite3.json"
    if sqlite.exists():
        data = json.loads(sqlite.read_text())
        ratios += _from_benchmarks(data.get("driver", "sqlite3"), data.get("benchmarks", {}))
    population = results / "population.json"
    if population.exists():
        data = json.loads(population.read_text())
        rows = data.get("rows")
        if data.get("raw_fetchmany_s") and data.get("population_fetchmany_s"):
            ratios.append(Ratio("sqlite3", "P5", f"read {rows:,} rows while they are fetched",
                                "asynchdb", "raw fetchmany on the same thread",
                                data["population_fetchmany_s"] / data["raw_fetchmany_s"],
                                None, None, None))
        if data.get("first_row_ms") and data.get("raw_execute_fetchone_ms"):
            ratios.append(Ratio("sqlite3", "P5", "time to the first row",
                                "asynchdb", "raw execute + fetchone",
                                data["first_row_ms"] / data["raw_execute_fetchone_ms"],
                                None, None, None))
    drivers = results / "drivers.json"
    if drivers.exists():
        data = json.loads(drivers.read_text())
        for backend, benches in (data.get("backends") or {}).items():
            if isinstance(benches, dict):
                ratios += _from_benchmarks(backend, benches)
        p6b = data.get("P6b")
        if isinstance(p6b, dict) and p6b.get("throughput_ratio"):
            # statements per second, higher is better: plotted as time per statement
            target = p6b.get("target")
            ratios.append(Ratio(
                "psycopg", "P6b",
                f"{p6b.get('statements_at_once', '')} statements at once, time per statement",
                "asynchdb", "one raw thread per connection", 1 / p6b["throughput_ratio"],
                None, None, 1 / target if target else None))
    return ratios


def _short(text: str, width: int = 46) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[:width - 1] + "…"


def _bar_chart(ratios: list[Ratio], title: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    values = [r.ratio for r in ratios]
    errors = [[max(0.0, r.ratio - r.low) if r.low is not None else 0.0 for r in ratios],
              [max(0.0, r.high - r.ratio) if r.high is not None else 0.0 for r in ratios]]
    # green: the benchmark's own target is met; orange: missed; grey: no target
    colors = ["#9e9e9e" if r.target is None else "#2e7d32" if r.ratio <= r.target
              else "#ef6c00" for r in ratios]
    fig, ax = plt.subplots(figsize=(8, 0.9 + 0.62 * len(ratios)))
    y = list(range(len(ratios)))[::-1]
    ax.barh(y, values, xerr=errors, color=colors, alpha=0.9, capsize=3, height=0.38,
            error_kw={"lw": 1.2})
    for yi, r in zip(y, ratios):
        # the label sits above its bar, so the bars get the whole width
        ax.text(0.01, yi + 0.24, f"{r.bench}  {_short(r.label, 44)}   vs {_short(r.to, 58)}",
                fontsize=9, va="bottom", transform=ax.get_yaxis_transform())
        if r.target is not None:
            ax.plot([r.target, r.target], [yi - 0.25, yi + 0.22], ls=":", color="black",
                    lw=1.5)
        # the value in a column of its own at the right edge: never on a whisker or a target
        ax.text(1.0, yi, f"{r.ratio:.2f}x", va="center", ha="right", fontsize=10,
                fontweight="bold", transform=ax.get_yaxis_transform())
    ax.axvline(1.0, color="#444", lw=1)
    ax.set_yticks([])
    ax.set_ylim(-0.6, len(ratios) - 0.15)
    top = max([*values, *(r.high or 0 for r in ratios), *(r.target or 0 for r in ratios), 1.0])
    ax.set_xlim(0, top * 1.3)
    ax.set_xlabel("asynchdb's time / the baseline's time (median; lower is better; 1 = same)\n"
                  "whiskers: interquartile range; dotted: target; green: met, orange: missed, "
                  "grey: no target", fontsize=9)
    ax.set_title(title, fontsize=12)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130, metadata={"Software": None})
    plt.close(fig)


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.plots", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="the JSON results folder")
    parser.add_argument("--out", type=Path, default=OUT, help="where to write the PNG files")
    ns = parser.parse_args(argv)
    ratios = load(ns.results)
    if not ratios:
        parser.error(f"no comparisons found in {ns.results}")
    backends = list(dict.fromkeys(r.backend for r in ratios))
    for backend in backends:
        mine = [r for r in ratios if r.backend == backend]
        path = ns.out / f"{backend}.png"
        _bar_chart(mine, f"{backend}: asynchdb against each baseline", path)
        print(f"wrote {path} ({len(mine)} comparisons)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
