"""Comparison reports: several finished runs side by side in one folder.

`comparison.md` for people, `comparison.csv` for scripts, `curves_overlay.png` with every run's
curves on shared axes. Used by `compare-apis` (three API forms) and `transfer` (several backbones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kcnn import text
from kcnn.runs import plots
from kcnn.runs.folders import COMPARISON_CSV, COMPARISON_MD, OVERLAY
from kcnn.runs.records import write_atomic, write_csv


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.4f}" if abs(value) < 1000 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return "" if value is None else text.markdown_cell(value)


def markdown_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> str:
    """A pipe table; every cell and header escaped, so names (a run's, a class's, a setting's
    value) stay in their cell whatever characters they hold."""
    header = " | ".join(text.markdown_cell(c) for c in columns)
    lines = [f"| {header} |", "|" + "---|" * len(columns)]
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
    cells = [{k: text.csv_cell(v) for k, v in row.items()} for row in rows]
    write_csv(folder / COMPARISON_CSV, cells, columns)  # no cell a spreadsheet runs as a formula
    plots.overlay_curves(histories, folder / OVERLAY, title=title)
    parts = [
        f"# {text.markdown_cell(title)}",
        intro,
        "## Results",
        markdown_table(rows, columns),
        *sections,
        f"![learning curves]({OVERLAY})",
    ]
    write_atomic(folder / COMPARISON_MD, "\n\n".join(p for p in parts if p) + "\n")
    from kcnn.runs.html import write_report_after

    write_report_after(folder)  # report.html: the same report as one self-contained page


def compare_runs(runs, out: str | Path, name: str = "compare-runs") -> Path:
    """A comparison folder for any finished runs: comparison.md/.csv/.json, overlaid curves, and
    a table of the settings that differ between them."""
    from kcnn.errors import KcnnError
    from kcnn.runs import folders
    from kcnn.runs.browse import _labels, settings_differences
    from kcnn.runs.records import write_json

    if len(runs) < 2:
        raise KcnnError("compare needs at least two runs")
    for r in runs:
        if not r.is_run or r.metrics is None:
            raise KcnnError(f"{r.folder} is {r.status}: compare only runs that have a metrics.json")
    labels = _labels(runs)
    rows = [
        {
            "run": label,
            "command": r.command,
            "model": r.model_label,
            "dataset": r.dataset,
            "status": r.status,
            "epochs": r.epochs_done,
            "parameters": r.params,
            "test_accuracy": r.test_accuracy,
            "test_loss": r.test_loss,
            "best_val_accuracy": (r.metrics or {}).get("best_val_accuracy"),
            "seconds_per_epoch": (r.metrics or {}).get("seconds_per_epoch"),
            "wall_seconds": r.duration,
            "run_dir": str(r.folder.resolve()),
        }
        for label, r in zip(labels, runs, strict=True)
    ]
    differences = settings_differences(runs)
    if differences:
        section = "## Settings that differ\n\n" + markdown_table(differences, ["setting", *labels])
    else:
        section = "## Settings that differ\n\nNone: every run has the same settings."
    folder = folders.create(out, name)
    write_comparison(
        folder,
        " vs ".join(dict.fromkeys(f"{r.model_label} on {r.dataset}" for r in runs)),
        rows,
        {label: r.history() for label, r in zip(labels, runs, strict=True)},
        intro=f"{len(runs)} runs compared with `kcnn compare`.",
        sections=[section],
    )
    write_json(
        folder / folders.COMPARISON_JSON,
        {
            "folder": str(folder),
            "config": {"command": "compare", "runs": [str(r.folder.resolve()) for r in runs]},
            "rows": rows,
            "differences": differences,
        },
    )
    from kcnn.runs.html import write_report

    write_report(folder)  # again: comparison.json now names the runs
    return folder
