"""Comparison reports: several finished runs side by side in one folder.

`comparison.md` for people, `comparison.csv` for scripts, `curves_overlay.png` with every run's
curves on shared axes. Used by `compare-apis` (three API forms) and `transfer` (several backbones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kcnn.runs import plots
from kcnn.runs.records import write_atomic, write_csv

COMPARISON_MD, COMPARISON_CSV, OVERLAY = "comparison.md", "comparison.csv", "curves_overlay.png"


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else str(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(c)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_comparison(
    folder: str | Path,
    title: str,
    rows: Sequence[Mapping[str, Any]],
    histories: Mapping[str, Mapping[str, Sequence[float]]],
    intro: str = "",
    sections: Sequence[str] = (),
) -> None:
    """Write comparison.md, comparison.csv and curves_overlay.png for `rows` (one per run).

    `histories` maps each run's label to its per-epoch history; `sections` are extra markdown
    blocks (such as an equivalence proof) placed after the results table.
    """
    folder = Path(folder)
    columns = list(dict.fromkeys(k for row in rows for k in row))
    write_csv(folder / COMPARISON_CSV, rows, columns)
    plots.overlay_curves(histories, folder / OVERLAY, title=title)
    parts = [
        f"# {title}",
        intro,
        "## Results",
        markdown_table(rows, columns),
        *sections,
        f"![learning curves]({OVERLAY})",
    ]
    write_atomic(folder / COMPARISON_MD, "\n\n".join(p for p in parts if p) + "\n")
    from kcnn.runs.html import write_report_after

    write_report_after(folder)  # report.html: the same report as one self-contained page
