"""Confirming a sweep's best trials over seeds (`kcnn sweep --confirm K --seeds N`), and the
paths a sweep records: each a folder inside the sweep folder, written from it. Part of
`kcnn sweep` (kcnn.commands.sweep)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kcnn.commands import experiments
from kcnn.commands.sweep_plan import Sweep
from kcnn.engine import interrupts
from kcnn.errors import KcnnError
from kcnn.runs.folders import inside as inside_sweep


def confirm(
    sweep: Sweep, record: dict[str, Any], best: int, seeds: int | list[int], echo=print
) -> dict:
    """Re-run the `best` best complete trials over `seeds` — as the `seeds` setting reads it: a
    count (the trial's seed, seed+1, ...) or a list of seeds — and compare them all with
    `kcnn.runs.report.compare_runs`. A run depends only on its
    settings and seed, so each trial's own run stands for its first seed; runs done by an
    earlier `--confirm` are reused. Writes confirm.json in the sweep folder.

    When seed groups and their statistics (kcnn.runs.stats) exist, the per-trial mean and
    spread below become those groups' intervals and the pairwise tests between them."""
    from kcnn.runs.records import write_json
    from kcnn.runs.report import compare_runs

    count = seeds if isinstance(seeds, int) else len(seeds)
    if not 1 <= best <= 100 or not 1 <= count <= 100:
        raise KcnnError(f"--confirm and --seeds take 1 … 100, got {best} and {count}")
    rows = [r for r in record["trials"] if r["state"] == "complete" and r["score"] is not None]
    rows.sort(key=lambda r: r["score"], reverse=sweep.direction == "maximize")
    chosen = rows[:best]
    if not chosen:
        raise KcnnError(f"{sweep.folder} has no complete trial to confirm yet")
    folder = sweep.folder
    groups, every, best_runs = [], [], []
    for row in chosen:
        runs, chosen_seeds = _trial_over_seeds(sweep, row, seeds, echo)
        groups.append(_group_row(folder, row, runs, chosen_seeds))
        every += runs
        best_runs = best_runs or runs  # the best trial's seeds
    from kcnn.commands import tuned  # did tuning help: the best trial against the start

    tuning = tuned.against_start(sweep, chosen[0]["trial"], best_runs, echo)
    comparison = _earlier_comparison(folder, every)
    if comparison is None and len(every) > 1:
        comparison = compare_runs(every, folder, name="confirm")
    result = {
        "best": best,
        "seeds": seeds,
        "rows": groups,
        "comparison": inside_sweep(folder, comparison) if comparison else None,
        "tuning": tuning,
        "note": f"the best {len(chosen)} trial(s) by {sweep.metric}, each over {count} seed(s); "
        "test accuracy mean, sample standard deviation, min and max",
    }
    write_json(folder / "confirm.json", result)
    return result


def _trial_over_seeds(sweep: Sweep, row: dict, seeds: int | list[int], echo) -> tuple[list, list]:
    """One trial's runs over the seeds (its own run for its first seed, runs an earlier
    `--confirm` finished reused, the rest trained now), and those seeds."""
    from kcnn.runs.browse import RunInfo

    folder = sweep.folder
    params = {k.removeprefix("param:"): v for k, v in row.items() if k.startswith("param:")}
    first = int(params.get("seed", sweep.config({}, "check", "seed").seed))
    chosen_seeds = [first + i for i in range(seeds)] if isinstance(seeds, int) else seeds
    runs: list[RunInfo] = []
    for seed in chosen_seeds:
        interrupts.check_stop(f"run the same `kcnn sweep {sweep.path} --confirm` to finish")
        own = _subfolder(folder, row["run"]) if row["run"] else None
        if seed == first and own is not None:
            runs.append(RunInfo.load(own))
            continue
        name = f"confirm-{row['trial']:04d}-seed{seed}"
        done = [RunInfo.load(d) for d in sorted(folder.glob(f"*-{name}"))]
        done = [r for r in done if r.status == "completed"]
        if done:
            runs.append(done[-1])
            continue
        config = sweep.config({**params, "seed": seed}, name, f"{sweep.path} confirm")
        summaries = experiments.run_each(
            experiments.Experiment(sweep.path, "", [config]), quiet=True
        )
        runs += [RunInfo.load(d) for s in summaries for d in s["run_dirs"]]
        echo(
            f"confirm trial {row['trial']} seed {seed}: test accuracy {runs[-1].test_accuracy:.4f}"
        )
    return runs, chosen_seeds


def _group_row(folder: Path, row: dict, runs: list, chosen_seeds: list[int]) -> dict:
    """confirm.json's row for one trial: its test accuracies over the seeds, summarised."""
    import statistics

    accuracies = [r.test_accuracy for r in runs if r.test_accuracy is not None]
    return {
        "trial": row["trial"],
        "seeds": ", ".join(map(str, chosen_seeds)),
        "mean_test_accuracy": statistics.fmean(accuracies),
        "sd_test_accuracy": statistics.stdev(accuracies) if len(accuracies) > 1 else None,
        "test_accuracies": accuracies,
        "min": min(accuracies),
        "max": max(accuracies),
        "runs": [inside_sweep(folder, r.folder) for r in runs],
    }


def _earlier_comparison(folder: Path, runs) -> Path | None:
    """The comparison an earlier `--confirm` wrote of these very runs, if it is still there."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    try:
        before = RunFolder(folder).json("confirm.json")
    except (FileNotFoundError, Damaged):
        return None
    named = before.get("comparison")
    rows = before.get("rows")
    if not isinstance(named, str) or not isinstance(rows, list):
        return None
    ran = sorted(str(d) for row in rows if isinstance(row, dict) for d in row.get("runs") or [])
    here = _subfolder(folder, named)  # a folder inside the sweep, never one a record points out to
    if here is not None and ran == sorted(inside_sweep(folder, r.folder) for r in runs):
        return here
    return None


def _subfolder(folder: Path, name: str) -> Path | None:
    """`name`, a path from the sweep folder, if it is a real folder inside it (no link, no ..)."""
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    here = folder
    for part in Path(name).parts:
        try:
            inside = {p.name for p in RunFolder(here).subfolders()}
        except Damaged:
            return None
        if part in ("..", ".", "/") or part not in inside:
            return None
        here = here / part
    return here
