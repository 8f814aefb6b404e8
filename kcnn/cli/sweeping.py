"""`kcnn sweep FILE`: a hyperparameter search (Optuna), every trial a normal run folder."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from kcnn.cli.app import AsJson, app, print_json, say
from kcnn.cli.options import MLFLOW_HELP, Tracked, tracked
from kcnn.engine import hooks
from kcnn.engine.schema import parse_seeds
from kcnn.errors import KcnnError

SweepFile = Annotated[
    Path,
    typer.Argument(
        help="A sweep file: one [[run]] table and a [sweep] table naming the space, the "
        "metric and the trials (see experiments/sweeps/sweep-*.toml).",
        metavar="FILE",
    ),
]
Check = Annotated[
    bool,
    typer.Option(
        "--check",
        "--dry-run",
        help="Check the file, its space and its data, print the plan, and stop.",
    ),
]
Jobs = Annotated[int, typer.Option(help="Trials at once, each worker in its own process.")]
Storage = Annotated[
    str | None,
    typer.Option(
        help="The study's database (an SQLAlchemy URL such as postgresql://host/db), shared "
        "by workers on several machines [default: SWEEP/study.db].",
        show_default=False,
        metavar="URL",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option(
        help="Folder that receives the sweep folder [default: the run's out].", show_default=False
    ),
]
Confirm = Annotated[
    int, typer.Option(help="Afterwards, re-run the best K trials over --seeds seeds and compare.")
]
Seeds = Annotated[
    str,
    typer.Option(
        help="The seeds of each confirmed trial, as the `seeds` setting takes them: a count "
        "(3: the trial's seed, seed+1, ...) or a list (83,84,85).",
        metavar="N|SEED,SEED,...",
    ),
]
Mlflow = Annotated[
    str | None, typer.Option("--mlflow", help=MLFLOW_HELP, show_default=False, metavar="[URI]")
]


@app.command("sweep", cls=Tracked)
def sweep(
    file: SweepFile,
    check: Check = False,
    jobs: Jobs = 1,
    storage: Storage = None,
    out: Out = None,
    confirm: Confirm = 0,
    seeds: Seeds = "3",
    mlflow: Mlflow = None,
    worker: Annotated[int | None, typer.Option(hidden=True)] = None,
    as_json: AsJson = False,
) -> None:
    """Search settings with Optuna: TPE, random or grid sampling, pruning from each epoch's
    validation metric, the study in SQLite (the same command again continues it)."""
    from kcnn.commands import sweep as sweeping  # not for `kcnn --help`
    from kcnn.runs import sweep_report

    confirm_seeds = parse_seeds("--seeds", seeds)  # before any work, as the setting is
    if confirm < 0:
        raise KcnnError(
            f"--confirm {confirm}: give the number of best trials to confirm, 1 or more"
        )
    plan = sweeping.load(file, out)
    # every option before anything is made or trained
    sweeping.check_options(jobs, confirm, confirm_seeds, storage)
    if check:
        sweeping.preflight(plan)
        return _show_plan(file, plan, as_json)

    def echo(text: str) -> None:
        print(text, file=sys.stderr if as_json else sys.stdout, flush=True)

    tags = {"kcnn.sweep": plan.name}
    with tracked(mlflow, experiment=plan.name, tags=tags) as tracker:
        if worker is not None:  # one of `--jobs N`'s processes: trials only
            sweeping.work(plan, storage, worker, echo)
            return
        record = sweeping.run(plan, storage, jobs, echo, worker_args=tuple(hooks.child_args()))
        if confirm:
            sweeping.confirm(plan, record, confirm, confirm_seeds, echo)
            record = sweep_report.write(plan.folder, sweeping.open_study(plan, storage), plan)
        if tracker is not None:
            from kcnn.runs import mlflow_log  # MLflow: only under --mlflow

            files = [sweep_report.TRIALS_JSON, sweep_report.TRIALS_CSV, "report.html"]
            files += [*sweep_report.PLOTS, sweep_report.BEST_CONFIG]
            mlflow_log.log_folder(tracker, plan.folder, f"{plan.name}-report", files)
    if as_json:
        print_json(record)
        return
    _show_record(plan, record)


def _show_plan(file: Path, plan, as_json: bool) -> None:
    """`kcnn sweep --check`: the plan, after every check a trial would make."""
    shown = {
        "file": str(file),
        "folder": str(plan.folder),
        "command": plan.command,
        "metric": plan.metric,
        "direction": plan.direction,
        "trials": plan.trials,
        "sampler": plan.sampler,
        "pruner": plan.pruner,
        "space": {k: d.describe() for k, d in plan.space.items()},
    }
    if as_json:
        print_json(shown)
        return
    say(
        f"{file}: {plan.trials} {plan.command} trials, {plan.sampler} sampler, "
        f"{plan.pruner} pruner, {plan.direction} {plan.metric}; into {plan.folder}",
        *(f"  {key}: {text}" for key, text in shown["space"].items()),
    )


def _show_record(plan, record: dict) -> None:
    """What a finished sweep says: its counts, its best trial, how to replay it."""
    best = record.get("best")
    counts = record["counts"]
    typer.echo(
        f"{plan.name}: {counts['complete']} complete, {counts['pruned']} pruned, "
        f"{counts['fail']} failed"
    )
    if best:
        params = ", ".join(
            f"{k.removeprefix('param:')}={v}" for k, v in best.items() if k.startswith("param:")
        )
        test = best.get("test_accuracy")
        say(
            f"best: trial {best['trial']} ({params}): {plan.metric} {best['score']:.4f}"
            + (f", test accuracy {test:.4f}" if test is not None else "")
        )
    if record.get("best_config"):
        say(f"replay: kcnn run {plan.folder / record['best_config']}")
    say(f"report: {plan.folder / 'report.html'}")
