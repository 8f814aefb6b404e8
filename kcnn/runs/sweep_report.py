"""A sweep's report, written from its study and its trials' run folders.

In the sweep folder: `trials.json` (every trial: state, score, settings, test accuracy, run
folder; the record the report and RESULTS tables are made from), `trials.csv`, `best_config.json`
(the best trial's config.json, placed beside the sweep: `kcnn run SWEEP/best_config.json`
replays it), Optuna's matplotlib plots (optimisation history, parameter importances, parallel
coordinates, slices) and `report.html`, one self-contained page (pictures embedded as base64
PNG, every text escaped). `comparison.json` makes `kcnn runs` list the sweep with its trials.

    python -m kcnn.runs.sweep_report runs/sweep-x/trials.json    # the trials table, in markdown
"""

from __future__ import annotations

import html
import math
import sys
import warnings
from pathlib import Path
from typing import Any

from kcnn.engine import interrupts
from kcnn.runs import folders, tables
from kcnn.runs.records import read_json, write_atomic, write_csv, write_json

TRIALS_JSON, TRIALS_CSV, BEST_CONFIG = "trials.json", "trials.csv", "best_config.json"
CONFIRM_JSON = "confirm.json"
PLOTS = {
    "history.png": ("Optimisation history", "plot_optimization_history"),
    "importances.png": ("Parameter importances", "plot_param_importances"),
    "parallel.png": ("Parallel coordinates", "plot_parallel_coordinate"),
    "slices.png": ("Slices: score against each setting", "plot_slice"),
}


def index(folder: Path, sweep) -> None:
    """comparison.json: `kcnn runs` and `kcnn show` see the sweep and its trials from the start."""
    write_json(
        folder / folders.COMPARISON_JSON,
        {
            "folder": str(folder),
            "kind": "sweep",
            "config": {
                "command": "sweep",
                "file": str(sweep.path),
                "metric": sweep.metric,
                "direction": sweep.direction,
                "trials": sweep.trials,
            },
        },
    )


def best_runs(folder: str | Path, limit: int = 5) -> list:
    """The run folders of a sweep's best complete trials, best first (`kcnn compare SWEEP`);
    empty when `folder` is no sweep folder or has no trials.json yet.

    trials.json is read as untrusted (a sweep folder may come from anyone): a regular file of
    sane size whose rows must be tables with a number for a score and, for a run, the name of a
    real folder inside the sweep (never a link, an absolute path or `..`); anything else is a
    one-line refusal naming the row."""
    from kcnn.errors import KcnnError
    from kcnn.runs.browse import RunInfo
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    folder = Path(folder).expanduser()
    sweep = RunFolder(folder)
    if not sweep.has(folders.COMPARISON_JSON) or not sweep.has(TRIALS_JSON):
        return []
    try:
        record = sweep.json(TRIALS_JSON)
        rows = _checked_rows(folder, record)
    except Damaged as e:
        raise KcnnError(f"{e.path} is damaged ({e.reason}): the sweep cannot be compared") from None
    rows = [r for r in rows if r.get("state") == "complete" and r.get("run")]
    rows.sort(key=lambda r: r["score"], reverse=record.get("direction") == "maximize")
    found = [RunInfo.load(folder / r["run"]) for r in rows[:limit]]
    return [r for r in found if r.is_run and r.metrics is not None]


def _checked_rows(folder: Path, record: dict[str, Any]) -> list[dict[str, Any]]:
    """trials.json's rows, each checked (see `best_runs`), or Damaged naming the first bad one."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    where = folder / TRIALS_JSON
    rows = record.get("trials", [])
    if not isinstance(rows, list):
        raise Damaged(where, "its trials are not a list")
    inside = {p.name for p in RunFolder(folder).subfolders()}  # real folders, never links
    for number, row in enumerate(rows):
        if not isinstance(row, dict):
            raise Damaged(where, f"trial row {number} is not a table")
        score, run = row.get("score"), row.get("run")
        if score is not None and (
            isinstance(score, bool)
            or not isinstance(score, int | float)
            or not math.isfinite(score)
        ):
            raise Damaged(
                where, f"trial row {number}: its score {str(score)[:40]!r} is not a number"
            )
        if (
            row.get("state") == "complete"
            and run is not None
            and (not isinstance(run, str) or run not in inside)
        ):
            raise Damaged(
                where,
                f"trial row {number} names the run {str(run)[:80]!r}, which is not a folder "
                "inside the sweep",
            )
    return [r for r in rows if r.get("score") is not None]


def trial_rows(study, folder: Path) -> list[dict[str, Any]]:
    """One row per trial, in trial order, from the study (settings, scores) alone."""
    rows = []
    for t in study.get_trials(deepcopy=False):
        attrs = t.user_attrs
        run = attrs.get("folder")
        rows.append(
            {
                "trial": t.number,
                "state": t.state.name.lower(),
                "score": t.value if t.value is not None else _last(t.intermediate_values),
                **{f"param:{k}": v for k, v in t.params.items()},
                "test_accuracy": attrs.get("test_accuracy"),
                "epochs": attrs.get("epochs"),
                "pruned_at_epoch": attrs.get("pruned_at_epoch"),
                "seconds": attrs.get("seconds"),
                "retry_of": (t.system_attrs.get("retry_history") or [attrs.get("retry_of")])[-1],
                "failed_because": attrs.get("failed_because"),
                "run": _relative(run, folder),
            }
        )
    return rows


def _last(values: dict[int, float]) -> float | None:
    return values[max(values)] if values else None


def _relative(path: str | None, folder: Path) -> str | None:
    """A trial's folder as its name inside the sweep folder: trials.json never records a place
    on one machine's disk (a study recorded before kcnn kept paths relative held absolute ones,
    perhaps of another machine sharing its --storage)."""
    if not path or not isinstance(path, str):
        return None
    if not Path(path).is_absolute():
        return Path(path).as_posix()  # as kcnn records it now (checked where it is read)
    try:
        return Path(path).resolve().relative_to(folder.resolve()).as_posix()
    except (ValueError, OSError, RuntimeError):
        return Path(path).name or None


def write(folder: Path, study, sweep) -> dict[str, Any]:
    """Every report file; returns trials.json's content."""
    rows = trial_rows(study, folder)
    complete = [r for r in rows if r["state"] == "complete" and r["score"] is not None]
    best = (
        (max if sweep.direction == "maximize" else min)(complete, key=lambda r: r["score"])
        if complete
        else None
    )
    record = {
        "sweep": sweep.name,
        "file": str(sweep.path),
        "description": sweep.description,
        "command": sweep.command,
        "metric": sweep.metric,
        "direction": sweep.direction,
        "sampler": sweep.sampler,
        "pruner": sweep.pruner,
        "trials_asked": sweep.trials,
        "space": {k: d.describe() for k, d in sweep.space.items()},
        "base": sweep.base,
        "counts": {s: sum(r["state"] == s for r in rows) for s in ("complete", "pruned", "fail")},
        "best": best,
        "trials": rows,
    }
    if best is not None and best["run"]:
        record["best_config"] = _best_config(folder, best, sweep)
    confirm = folder / CONFIRM_JSON
    if confirm.is_file():
        record["confirm"] = read_json(confirm)
    write_json(folder / TRIALS_JSON, record)
    write_csv(folder / TRIALS_CSV, rows, list(dict.fromkeys(k for r in rows for k in r)))
    shown = plots(study, folder, sweep)
    index(folder, sweep)
    write_atomic(folder / folders.REPORT_HTML, page(record, folder, shown))
    return record


def _best_config(folder: Path, best: dict[str, Any], sweep) -> str | None:
    """The best trial's config.json, its `out` and `name` put beside the sweep, so that `kcnn
    run` replays it into a new run folder of its own."""
    run = folder / best["run"]
    source = run / folders.CONFIG if (run / folders.CONFIG).is_file() else None
    if source is None:  # a comparison (compare-apis, several backbones): its first run's
        found = sorted(run.glob(f"*/{folders.CONFIG}"))
        source = found[0] if found else None
    if source is None:
        return None
    record = read_json(source)
    record["out"] = str(sweep.out)
    record["name"] = f"{sweep.name}-best"
    if record.get("command") != sweep.command:  # a compare-apis trial: its whole settings
        record = {
            "command": sweep.command,
            **sweep.config(_params(best), "best", "best").settings_dict(),
        }
        record["out"], record["name"] = str(sweep.out), f"{sweep.name}-best"
    write_json(folder / BEST_CONFIG, record)
    return BEST_CONFIG


def _params(row: dict[str, Any]) -> dict[str, Any]:
    return {k.removeprefix("param:"): v for k, v in row.items() if k.startswith("param:")}


def plots(study, folder: Path, sweep) -> dict[str, str]:
    """Optuna's matplotlib plots, as PNG files; a plot the study cannot make yet (too few
    finished trials, one setting) is left out with the reason, never a failed report."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from optuna.visualization import matplotlib as vis

    shown: dict[str, str] = {}
    target_name = sweep.metric
    for name, (title, function) in PLOTS.items():
        path = folder / name
        path.unlink(missing_ok=True)
        try:
            # Optuna sets its own style globally: kept inside this block, so later pictures of
            # the same process (a --confirm run's curves) keep kcnn's.
            with warnings.catch_warnings(), matplotlib.rc_context():
                warnings.simplefilter("ignore")
                axes = getattr(vis, function)(study, target_name=target_name)
                figure = np.atleast_1d(axes).flat[0].figure
                wide = function in ("plot_slice", "plot_parallel_coordinate")
                figure.set_size_inches(max(8, 3.5 * len(sweep.space)) if wide else 8, 5)
                figure.savefig(path, dpi=100, bbox_inches="tight")
                plt.close(figure)
            shown[name] = title
        except Exception as e:  # noqa: BLE001  (Optuna refuses plots it lacks trials for)
            plt.close("all")
            interrupts.check_stop()  # a stop request is never a picture's failure
            shown[name] = f"not drawn: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
    return shown


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}" if math.isfinite(value) else str(value)
    return "" if value is None else str(value)


def columns(rows: list[dict[str, Any]]) -> list[str]:
    params = list(dict.fromkeys(k for r in rows for k in r if k.startswith("param:")))
    return ["trial", "state", "score", *params, "test_accuracy", "epochs", "seconds", "run"]


def page(record: dict[str, Any], folder: Path, shown: dict[str, str]) -> str:
    """report.html: self-contained, every text escaped, pictures embedded."""
    from kcnn.runs.html import _image, _page, _pairs

    e = html.escape
    rows = record["trials"]
    counts = record["counts"]
    parts = [
        f"<h1>Sweep {e(record['sweep'])}</h1>",
        f"<p>{e(record['description'])}</p>" if record["description"] else "",
        f"<p><code>{e(str(folder))}</code> from <code>{e(record['file'])}</code>: "
        f"{e(record['command'])} runs, {e(record['direction'])} {e(record['metric'])} "
        f"(the last epoch's), sampler {e(record['sampler'])}, pruner {e(record['pruner'])}; "
        f"{counts['complete']} complete, {counts['pruned']} pruned, {counts['fail']} failed "
        f"of {record['trials_asked']} asked.</p>",
        "<h2>Search space</h2>",
        _pairs(record["space"]),
    ]
    best = record.get("best")
    if best:
        parts += ["<h2>Best trial</h2>", tables.as_html([best], columns([best]))]
        if record.get("best_config"):
            parts.append(
                f"<p>Replay it: <code>kcnn run {e(str(folder / record['best_config']))}</code></p>"
            )
    parts += ["<h2>Trials</h2>", tables.as_html(rows, columns(rows))]
    for name, title in shown.items():
        (heading, _) = PLOTS[name]
        picture = _image(folder, name, heading)  # a checked PNG inside the folder, or nothing
        parts += [f"<h2>{e(heading)}</h2>", picture or f"<p>{e(title)}</p>"]
    confirm = record.get("confirm")
    if confirm:
        parts += ["<h2>Confirmed over seeds</h2>", f"<p>{e(confirm.get('note', ''))}</p>"]
        parts.append(
            tables.as_html(
                confirm["rows"],
                ["trial", "seeds", "mean_test_accuracy", "sd_test_accuracy", "min", "max"],
            )
        )
        if confirm.get("comparison"):
            parts.append(f"<p>Comparison: <code>{e(confirm['comparison'])}</code></p>")
        tuning = confirm.get("tuning")
        if isinstance(tuning, dict) and isinstance(tuning.get("sentence"), str):
            parts.append(f"<p><b>Did tuning help?</b> {e(tuning['sentence'])}</p>")
    return _page(f"Sweep {record['sweep']}", parts)


def markdown(record: dict[str, Any], limit: int | None = None) -> str:
    """The trials table of a trials.json, best first, as markdown (for RESULTS.md)."""
    rows = [r for r in record["trials"] if r["score"] is not None]
    reverse = record["direction"] == "maximize"
    rows.sort(key=lambda r: r["score"], reverse=reverse)
    rows = rows[:limit] if limit else rows
    cols = [c for c in columns(rows) if c not in ("run",)]
    lines = [
        "| " + " | ".join(c.removeprefix("param:") for c in cols) + " |",
        "|" + "---|" * len(cols),
    ]

    def cell(row: dict[str, Any], column: str) -> str:
        value = row.get(column)
        return f"{value:.0f}" if column == "seconds" and value is not None else _cell(value)

    lines += ["| " + " | ".join(cell(r, c) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def confirm_table(record: dict[str, Any]) -> str:
    """The `--confirm` rows of a trials.json as markdown (empty without a confirmation)."""
    confirm = record.get("confirm")
    if not confirm:
        return ""
    settings = {r["trial"]: _params(r) for r in record["trials"]}
    lines = [
        "| trial | settings | seeds | test accuracy per seed | mean | sd |",
        "|---|---|---|---|---|---|",
    ]
    for row in confirm["rows"]:
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in settings.get(row["trial"], {}).items())
        each = " / ".join(f"{v:.4f}" for v in row.get("test_accuracies", []))
        sd = row.get("sd_test_accuracy")
        lines.append(
            f"| {row['trial']} | {shown} | {row['seeds']} | {each} | "
            f"{row['mean_test_accuracy']:.4f} | {'' if sd is None else f'{sd:.4f}'} |"
        )
    tuning = confirm.get("tuning")
    if isinstance(tuning, dict) and isinstance(tuning.get("sentence"), str):
        lines += ["", f"Did tuning help? {tuning['sentence']}"]
    return "\n".join(lines)


def summary(record: dict[str, Any]) -> str:
    """One paragraph of a trials.json's figures: counts, time in trials, the best trial."""
    counts = record["counts"]
    seconds = sum(r.get("seconds") or 0 for r in record["trials"])
    text = (
        f"{len(record['trials'])} trials: {counts['complete']} complete, {counts['pruned']} "
        f"pruned, {counts['fail']} failed; {seconds:,.0f} s ({seconds / 60:.1f} min) inside trials."
    )
    best = record.get("best")
    if best:
        shown = ", ".join(f"{k}={_cell(v)}" for k, v in _params(best).items())
        text += (
            f" Best by {record['metric']}: trial {best['trial']} ({shown}), "
            f"{record['metric']} {best['score']:.4f}, test accuracy {_cell(best['test_accuracy'])}."
        )
    return text


if __name__ == "__main__":  # python -m kcnn.runs.sweep_report TRIALS_JSON [LIMIT]
    data = read_json(sys.argv[1])
    print(summary(data) + "\n")
    print(markdown(data, int(sys.argv[2]) if len(sys.argv) > 2 else None))
    if data.get("confirm"):
        print("\n" + confirm_table(data))
