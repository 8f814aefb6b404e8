"""Comparison reports: several finished runs side by side in one folder; and a group folder's
report of its seed runs (`--seeds`: mean ± 95% interval, tests, band curves, per-class intervals).

`comparison.md` for people, `comparison.csv` for scripts, `curves_overlay.png` with every run's
curves on shared axes. Used by `compare-apis` (three API forms) and `transfer` (several backbones).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kcnn import text
from kcnn.errors import KcnnError
from kcnn.runs import folders, groups, pairing, plots, stats, tables
from kcnn.runs import html as pages
from kcnn.runs.browse import RunInfo, _labels, settings_differences
from kcnn.runs.folders import COMPARISON_CSV, COMPARISON_MD, OVERLAY
from kcnn.runs.html import write_report, write_report_after
from kcnn.runs.records import write_atomic, write_csv, write_json


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
        tables.as_markdown(rows, columns),
        *sections,
        f"![learning curves]({OVERLAY})",
    ]
    write_atomic(folder / COMPARISON_MD, "\n\n".join(p for p in parts if p) + "\n")

    write_report_after(folder)  # report.html: the same report as one self-contained page


def compare_runs(
    runs,
    out: str | Path,
    name: str = "compare-runs",
    title: str = "",
    intro: str = "",
    grouped: dict[str, list] | None = None,
) -> Path:
    """A comparison folder for any finished runs: comparison.md/.csv/.json, overlaid curves, and
    a table of the settings that differ between them. `title` (default: the models and data
    compared) and `intro` name what asked for the comparison, such as an experiment file.
    `grouped`: the groups the user named (`groups.named_groups`); by default runs that differ
    only in their seed make a group."""
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
            "test_accuracy_95ci": r.accuracy_interval.cell() if r.accuracy_interval else "",
            "test_balanced_accuracy": (r.metrics or {}).get("test_balanced_accuracy"),
            "test_macro_f1": (r.metrics or {}).get("test_macro_f1"),
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
        section = "## Settings that differ\n\n" + tables.as_markdown(
            differences, ["setting", *labels], keyed_by="setting"
        )
    else:
        section = "## Settings that differ\n\nNone: every run has the same settings."
    named = grouped is not None
    grouped = grouped if named else groups.group_runs(runs)  # differing only in seed: a group
    described = groups.describe(grouped) if named or len(grouped) < len(runs) else None
    sections = [section]
    if described is not None:
        sections.insert(0, group_markdown("Seed groups", described, level=2))
    judged = pairing.single_runs(runs, grouped, labels)  # two single runs: are they different?
    if judged.markdown():
        sections.insert(0, judged.markdown())
    folder = folders.create(out, name)
    write_comparison(
        folder,
        title or " vs ".join(dict.fromkeys(f"{r.model_label} on {r.dataset}" for r in runs)),
        rows,
        {label: r.history() for label, r in zip(labels, runs, strict=True)},
        intro=intro or f"{len(runs)} runs compared with `kcnn compare`.",
        sections=sections,
    )
    write_json(
        folder / folders.COMPARISON_JSON,
        {
            "folder": str(folder),
            "config": {"command": "compare", "runs": [str(r.folder.resolve()) for r in runs]},
            "rows": rows,
            "differences": differences,
            "groups": described,
            "verdicts": judged.records(),
            "verdict_notes": judged.notes,
        },
    )

    write_report(folder)  # again: comparison.json now names the runs
    return folder


# --- a group of seed runs (kcnn.runs.groups) ------------------------------------------------


# What a group's table states, each as a mean ± its 95% interval (balanced accuracy and macro-F1:
# the figures where a rare class counts as much as a common one).
GROUP_METRICS = (
    "test_accuracy",
    "test_balanced_accuracy",
    "test_macro_f1",
    "test_loss",
    "best_val_accuracy",
)


def group_markdown(
    title: str, described: dict[str, Any], level: int = 1, unit: str = "seeds"
) -> str:
    """group.md (and the groups section of a comparison): each group's mean ± 95% interval, each
    test, and one sentence per pair. `unit` names what the runs of a group vary: seeds or folds."""
    rows = []
    for name, g in described["groups"].items():
        row = {"group": name, unit: g["n"]}
        for metric in GROUP_METRICS:
            s = g["metrics"].get(metric)
            if s is not None:
                row[metric] = stats.Summary(
                    s["n"], s["mean"], s["sd"], s["ci_low"], s["ci_high"]
                ).text()
                row[f"{metric} sd"] = "" if s["sd"] is None else f"{s['sd']:.4f}"
        rows.append(row)
    columns = list(dict.fromkeys(k for r in rows for k in r))
    head = "#" * level
    parts = [
        f"{head} {title}",
        f"Mean ± half-width of the 95% confidence interval (Student's t) over the {unit}; sd with "
        "ddof=1. Differences are the second group's mean minus the first's: a paired t-test where "
        f"the {unit} pair (same seed, same split), Welch's otherwise; when more than one pair is "
        "compared, Holm-corrected over the pairs compared in each metric (each metric is its "
        "own family, named in its sentences).",
        f"{head}# Groups",
        tables.as_markdown(rows, columns),
    ]
    if described["tests"]:
        table = [
            {
                "metric": t["metric"],
                "pair": f"{t['b']} − {t['a']}",
                "difference": f"{t['difference']:+.4f}",
                "95% CI": ""
                if t["ci_low"] is None
                else f"[{t['ci_low']:+.4f}, {t['ci_high']:+.4f}]",
                "test": t["test"],
                "p": "" if t["p"] is None else f"{t['p']:.4g}",
                "p (Holm)": "" if t["p_holm"] is None else f"{t['p_holm']:.4g}",
                "effect": ""
                if t["effect_size"] is None
                else f"{t['effect']} = {t['effect_size']:.2f}",
            }
            for t in described["tests"]
        ]
        parts += [f"{head}# Differences", tables.as_markdown(table, list(table[0]))]
        parts += ["\n".join(f"- {text.markdown_cell(t['sentence'])}" for t in described["tests"])]
    if described["identical"]:
        parts += ["**Identical:** every group gave the same test accuracy at every seed."]
    if described.get("duplicates"):
        parts += ["\n".join(f"- Note: {text.markdown_cell(n)}" for n in described["duplicates"])]
    return "\n\n".join(parts) + "\n"


def write_group(folder: str | Path, record: dict[str, Any]) -> dict[str, Any]:
    """Summarise a group folder's finished seeds into group.json (keeping `record`'s settings and
    status), group.md, curves_band.png, per_class.png and report.html. Returns group.json."""
    folder = Path(folder)
    done = [r for r in RunInfo.load(folder).sub_runs if r.status == "completed"]
    grouped, _ = groups.counted_once(groups.group_runs(done))  # a seed redone counts once
    described = (
        groups.describe(groups.group_runs(done))
        if done
        else {"groups": {}, "tests": [], "identical": False, "duplicates": []}
    )
    for g in described["groups"].values():
        g["runs"] = [str(Path(p).relative_to(folder)) for p in g["runs"]]
    data = {**record, "kind": "group", **described}
    write_json(folder / groups.GROUP_JSON, data)
    over = (
        f"{record['folds']} folds"
        if record.get("folds")
        else f"{len(record.get('seeds') or [])} seeds"
    )
    title = f"{record.get('name') or folder.name}: {over}"
    if done:
        plots.band_curves(
            {name: [r.history() for r in runs] for name, runs in grouped.items()},
            folder / groups.BAND,
            title=f"{title} (mean and 95% interval over {over.split()[1]})",
        )
        per_class = {n: g["per_class"] for n, g in described["groups"].items() if g["per_class"]}
        if per_class:
            plots.per_class_intervals(per_class, folder / groups.PER_CLASS, title=title)
    unit = "folds" if record.get("folds") else "seeds"
    text = group_markdown(title, described, unit=unit) + _out_of_fold(record)
    for name, picture in (("learning curves", groups.BAND), ("per-class F1", groups.PER_CLASS)):
        if (folder / picture).is_file():
            text += f"\n![{name}]({picture})\n"
    write_atomic(folder / groups.GROUP_MD, text)
    write_group_report(folder)
    return data


def _out_of_fold(record: dict[str, Any]) -> str:
    """A folds group's cross-validation in words (nothing for a group of seeds)."""
    cv = record.get("cross_validation")
    if not cv:
        return ""
    return (
        f"\n\n## Out of fold\n\nThe {record['folds']} folds stand where seeds stand in a group "
        "of seeds: each run validated on one fold of the training images, all tested on the same "
        f"test split. Out of fold ({cv['images']:,} training images, each answered by the fold "
        f"model that did not train on it; `{folders.OUT_OF_FOLD}`): accuracy "
        f"{cv['accuracy']:.4f}, balanced accuracy {cv['balanced_accuracy']:.4f}, macro-F1 "
        f"{cv['macro_f1']:.4f}.\n"
    )


def write_group_report(folder: str | Path) -> Path:
    """report.html of a group: group.md, then each group as one line (mean ± CI) that opens onto
    its seeds (HTML <details>: no script)."""
    folder = Path(folder)
    data = groups.read(folder) or {}
    text = groups.text(folder) or f"# {folder.name}"  # through the folder's owner
    parts = [pages.markdown_html(text, folder), "<h2>Seeds</h2>"]
    group, inside = RunInfo.load(folder), pages.folders_inside(folder)  # links: its own runs only
    for name, g in (data.get("groups") or {}).items():
        s = (g.get("metrics") or {}).get("test_accuracy")
        line = (
            stats.Summary(s["n"], s["mean"], s["sd"], s["ci_low"], s["ci_high"]).text() if s else ""
        )
        seeds = [RunInfo.load(folder / p) for p in g.get("runs") or []]
        rows = [{**r.row(), "report": pages.report_link(group, r, inside)} for r in seeds]
        for row, seed in zip(rows, g.get("seeds") or [], strict=False):
            row["seed"] = seed
        for row, fold in zip(rows, g.get("folds") or [], strict=False):
            row["fold"] = fold  # --folds: which fold validated the run
        first = ["seed", "fold"] if g.get("folds") else ["seed"]
        columns = [*first, "name", "status", "test_accuracy", "test_balanced_accuracy", "report"]
        table = tables.as_html(rows, columns)
        parts.append(
            f"<details><summary><b>{pages.html.escape(name)}</b>: test accuracy "
            f"{pages.html.escape(line)}</summary>{table}</details>"
        )
    path = folder / pages.REPORT
    write_atomic(path, pages._page(text.splitlines()[0].lstrip("# "), parts))
    return path
