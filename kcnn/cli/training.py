"""`kcnn train`, `kcnn compare-apis`, `kcnn transfer` and `kcnn run`: the commands that train.

Their options come from the configuration model (`kcnn.cli.options`); these functions only turn a
validated config into a run and show its result. Under `--json` every one of them prints one shape:
`{"command", "runs": [metrics.json of each run], "comparison": folder or null, ...}`.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Any

import typer

from kcnn.cli.app import AsJson, app, print_json, say
from kcnn.cli.options import MLFLOW_HELP, given, resolve, tracked, training_command
from kcnn.engine.config import CONFIGURATION, CompareConfig, TrainConfig, TransferConfig
from kcnn.errors import KcnnError


def answer(
    command: str, runs: list[dict[str, Any]], comparison: Path | None = None, **extra
) -> dict:
    """The one JSON shape of a training command's answer."""
    return {
        "command": command,
        "runs": runs,
        "comparison": str(comparison) if comparison else None,
        **extra,
    }


def _print_config(config) -> None:
    typer.echo(config.to_toml(), nl=False)


# --- kcnn train -----------------------------------------------------------------------------------

RESUME = inspect.Parameter(
    "resume",
    inspect.Parameter.KEYWORD_ONLY,
    default=None,
    annotation=Annotated[
        Path | None,
        typer.Option(
            help="Finish the interrupted run (or comparison) in this folder with its own settings.",
            show_default=False,
            metavar="RUN_DIR",
            rich_help_panel=CONFIGURATION,
        ),
    ],
)


def _only_resume(ctx: typer.Context, values, config_file, print_config, allowed=()) -> None:
    """--resume takes the run's own settings: refuse any other setting given with it."""
    extra = [k for k in values if k not in allowed and given(ctx, k) and values[k] is not None]
    if extra or config_file is not None or print_config:
        names = [f"--{k.replace('_', '-')}" for k in extra] + (["--config"] if config_file else [])
        names += ["--print-config"] if print_config else []
        also = "".join(f"--{k}, " for k in allowed)
        raise KcnnError(
            f"--resume continues a run with its own settings; drop {', '.join(names)} "
            f"(only {also}--json may be given)"
        )


def _train(ctx: typer.Context, resume: Path | None, config_file, print_config, as_json, **values):
    if resume is not None:
        _only_resume(ctx, values, config_file, print_config, allowed=("epochs",))
        from kcnn.commands.train import resume as resume_run

        result = resume_run(
            resume, values["epochs"] if given(ctx, "epochs") else None, quiet=as_json
        )
    else:
        if values.get("arch") is None and config_file is None:
            raise KcnnError(
                "name an architecture to train (see `kcnn list models`), or pass --resume RUN_DIR"
            )
        config = resolve(TrainConfig, ctx, values, config_file)
        if print_config:
            return _print_config(config)
        if config.seeds is not None:
            return show_group(config, as_json)
        from kcnn.commands.train import train

        result = train(config, quiet=as_json)
    if resume is not None:  # a resumed run calibrates if its own settings say so
        from kcnn.runs.browse import RunInfo

        wanted = RunInfo.load(result.run_dir).settings.get("calibrate") is True
    else:
        wanted = config.calibrate
    calibrated = _calibrate_after(wanted, [result.run_dir])
    show_run(result, as_json, calibrated)
    _show_calibrated(calibrated, as_json)


def _calibrate_after(wanted: bool, run_dirs: list[Path]) -> list[dict] | None:
    """`--calibrate`: temperature scaling of each finished run (kcnn.cli.inspect)."""
    if not wanted:
        return None
    from kcnn.engine import distribute

    dist = distribute.active()
    if dist is not None and not dist.chief:  # its folder was scratch: the chief calibrates
        return None
    from kcnn.cli.inspect import calibrate_after_training

    return [calibrate_after_training(Path(d)) for d in run_dirs]


def _show_calibrated(records: list[dict] | None, as_json: bool) -> None:
    if records is not None and not as_json:
        from kcnn.cli.inspect import show_calibrated

        show_calibrated(records)


def show_run(result, as_json: bool, calibrated: list[dict] | None = None) -> None:
    m = result.metrics
    if as_json:
        extra = {"calibration": calibrated} if calibrated is not None else {}
        print_json(answer("train", [m], **extra))
        return
    from kcnn.runs.browse import RunInfo

    info = RunInfo.load(result.run_dir)
    dataset = m["dataset"]
    if m.get("dataset_fallback"):  # `mnist-5k (asked: mnist, offline fallback)`
        dataset = info.dataset_text or dataset
    interval = info.accuracy_interval  # with its 95% interval from the test-set size
    accuracy = interval.text() if interval else f"{m['test_accuracy']:.4f}"
    say(f"test accuracy {accuracy}  test loss {m['test_loss']:.4f}  on {dataset}")
    from kcnn.engine import distribute

    dist = distribute.active()
    if dist is not None and not dist.chief:  # its folder was scratch, deleted at exit
        typer.echo("run folder: written by the chief worker")
        return
    say(f"run folder: {result.run_dir}")


training_command(
    TrainConfig,
    _train,
    help="Train one architecture, evaluate it on the test set, and save a run folder.",
    extra=[RESUME],
)


# --- kcnn transfer --------------------------------------------------------------------------------


def _transfer(
    ctx: typer.Context, resume: Path | None, config_file, print_config, as_json, **values
):
    if resume is not None:
        _only_resume(ctx, values, config_file, print_config)
        from kcnn.commands.transfer import resume as resume_run

        return show_transfer(resume_run(resume, quiet=as_json), as_json)
    if not values.get("backbones") and config_file is None:
        raise KcnnError(
            "name a backbone: vgg16, mobilenetv2, resnet50v2 or all (see `kcnn list backbones`)"
        )
    config = resolve(TransferConfig, ctx, values, config_file)
    if print_config:
        return _print_config(config)
    if config.seeds is not None:
        return show_group(config, as_json)
    from kcnn.commands.transfer import transfer

    result = transfer(config, quiet=as_json)
    calibrated = _calibrate_after(config.calibrate, [r.run_dir for r in result.runs])
    show_transfer(result, as_json, calibrated)
    _show_calibrated(calibrated, as_json)


def show_transfer(result, as_json: bool, calibrated: list[dict] | None = None) -> None:
    if as_json:
        extra = {"calibration": calibrated} if calibrated is not None else {}
        print_json(answer("transfer", [r.metrics for r in result.runs], result.folder, **extra))
        return
    typer.echo(
        f"\n{'backbone':<12}{'test acc':>9}{'95% CI':>15}{'test loss':>11}{'total params':>14}"
        f"{'trainable':>11}{'s/epoch':>9}  weights"
    )
    for r in result.rows:
        say(
            f"{r['backbone']:<12}{r['test_accuracy']:>9.4f}{r.get('test_accuracy_95ci', ''):>15}"
            f"{r['test_loss']:>11.4f}{r['total_params']:>14,}{r['trainable_params']:>11,}"
            f"{r['seconds_per_epoch']:>9.2f}  {r['weights_source']}"
        )
    if result.folder is not None:
        from kcnn.runs.report import COMPARISON_MD

        say(f"report: {result.folder / COMPARISON_MD}")
    else:
        say(f"run folder: {result.runs[0].run_dir}")


training_command(
    TransferConfig,
    _transfer,
    help="A frozen ImageNet backbone with a small head (seed 003's transfer experiment, done right).",
    extra=[RESUME],
)


# --- kcnn compare-apis ----------------------------------------------------------------------------


def _compare(ctx: typer.Context, resume: Path | None, config_file, print_config, as_json, **values):
    if resume is not None:
        _only_resume(ctx, values, config_file, print_config)
        from kcnn.commands.compare import resume_config

        return show_comparison(resume_config(resume), as_json, resume=resume)
    config = resolve(CompareConfig, ctx, values, config_file)
    if print_config:
        return _print_config(config)
    if config.seeds is not None:
        return show_group(config, as_json)
    show_comparison(config, as_json)


def show_comparison(config: CompareConfig, as_json: bool, resume: Path | None = None) -> None:
    """Run compare-apis (finishing the comparison in `resume`, if given) and show its result."""
    from kcnn.commands.compare import compare_apis
    from kcnn.errors import ModelMismatchError
    from kcnn.runs.report import COMPARISON_MD

    def show_proof(proof) -> None:
        if not as_json:
            typer.echo(
                f"{config.arch} in {len(proof.forms)} forms: proof before training "
                f"(weights of {proof.reference} copied into the others)\n{proof.text()}\n"
            )

    try:
        result = compare_apis(config, on_proof=show_proof, quiet=as_json, resume=resume)
    except ModelMismatchError as e:
        if as_json and getattr(e, "proof", None) is not None:
            e.details = {"proof": e.proof.as_dict()}
        raise
    run_dirs = [result.folder / row["run_dir"] for row in result.rows]
    calibrated = _calibrate_after(config.calibrate, run_dirs)
    if as_json:
        from kcnn.runs.records import read_json

        runs = [read_json(d / "metrics.json") for d in run_dirs]
        details = result.as_dict()
        details.pop("folder")
        if calibrated is not None:
            details["calibration"] = calibrated
        print_json(answer("compare-apis", runs, result.folder, **details))
        return
    typer.echo(
        f"\n{'form':<12}{'test acc':>9}{'95% CI':>15}{'test loss':>11}{'best val acc':>13}"
        f"{'build s':>9}{'s/epoch':>9}{'images/s':>10}"
    )
    for r in result.rows:
        typer.echo(
            f"{r['form']:<12}{r['test_accuracy']:>9.4f}{r.get('test_accuracy_95ci', ''):>15}"
            f"{r['test_loss']:>11.4f}{r['best_val_accuracy']:>13.4f}{r['build_seconds']:>9.3f}"
            f"{r['seconds_per_epoch']:>9.2f}{r['images_per_second'] or 0:>10,.0f}"
        )
    typer.echo(
        f"test accuracy spread {result.agreement['test_accuracy_spread']:.4f} "
        f"({result.config['init']} initial weights)"
    )
    say(f"report: {result.folder / COMPARISON_MD}")
    _show_calibrated(calibrated, as_json)


training_command(
    CompareConfig,
    _compare,
    help="The same CNN as Sequential, Functional and subclassed models: proven identical, then "
    "trained side by side.",
    extra=[RESUME],
)


def _figure(value, spec: str) -> str:
    return (
        format(value, spec)
        if isinstance(value, int | float) and not isinstance(value, bool)
        else "-"
    )


def show_runs_table(run_dirs: list) -> None:
    """The table that ends multi-run work: each run's test accuracy and loss, its epochs and its
    training time, so no run's result is left scrolled away above another's epochs."""
    from kcnn.runs.browse import interval_cell
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    typer.echo(
        f"\n{'test acc':>8} {'95% CI':>13} {'test loss':>9} {'epochs':>6} {'train s':>8}  run"
    )
    for d in run_dirs:
        try:
            m = RunFolder(d).metrics()
        except (OSError, Damaged):
            m = {}
        say(
            f"{_figure(m.get('test_accuracy'), '.4f'):>8} {interval_cell(d):>13} "
            f"{_figure(m.get('test_loss'), '.4f'):>9} "
            f"{_figure(m.get('epochs_completed'), 'd'):>6} {_figure(m.get('train_seconds'), '.1f'):>8}  "
            f"{Path(d).name}"
        )


# --- --seeds: one group of seed runs ---------------------------------------------------------------


def show_group(config, as_json: bool) -> None:
    """Run every seed of `config` (finishing an interrupted group), then show each group's mean ±
    95% interval and, between groups, the test and its sentence."""
    from kcnn.commands.seeds import run_group
    from kcnn.runs import stats
    from kcnn.runs.records import read_json

    group = run_group(config, quiet=as_json)
    record = group.record
    if as_json:
        runs = [read_json(d / "metrics.json") for d in group.run_dirs()]
        extra = {k: record[k] for k in ("seeds", "status", "groups", "tests", "identical")}
        print_json(answer(config.command, runs, None, group=str(group.folder), **extra))
        return
    show_runs_table(group.run_dirs())
    for name, g in record["groups"].items():
        m = g["metrics"].get("test_accuracy")
        line = stats.Summary(m["n"], m["mean"], m["sd"], m["ci_low"], m["ci_high"]).text()
        sd = "" if m["sd"] is None else f", sd {m['sd']:.4f}"
        typer.echo(f"{name}: test accuracy {line}{sd}  (95% interval over seeds {g['seeds']})")
    for t in record["tests"]:  # every tested metric's verdict (accuracy and loss)
        typer.echo(f"- {t['sentence']}")
    if record.get("identical"):
        typer.echo("the groups gave identical test accuracy at every seed")
    typer.echo(f"group folder: {group.folder}")


# --- kcnn run ---------------------------------------------------------------------------------------


def _check(file: Path, experiment, as_json: bool) -> None:
    """`kcnn run FILE --check`: each run under its heading with the settings that matter to it,
    checked as it would be before training (`preflight`); a last line says whether all passed."""
    from kcnn.commands import experiments
    from kcnn.progress import heading

    count = len(experiment.runs)
    if not as_json:
        say(f"{file}: {experiment.description}" if experiment.description else str(file))
    failed = []
    for number, cfg in enumerate(experiment.runs, 1):
        if not as_json:
            heading(number, count, experiments.title(cfg))
            body = cfg.to_toml(only_applicable=True).split("[[run]]\n", 1)[1].rstrip()
            say(*(f"  {line}" for line in body.splitlines()))
        try:  # what the run would refuse before training, --check refuses
            experiments.preflight(cfg)
        except KcnnError as e:
            failed.append(experiments.in_run(experiment, number, e))
            if not as_json:
                say(f"  check failed: {e}")
            continue
        if not as_json:
            typer.echo("  check passed")
    if len(failed) == 1:  # the very error the run itself would stop with
        raise failed[0]
    if failed:
        raise KcnnError(
            f"{len(failed)} of {count} runs failed their checks, listed above; the first: {failed[0]}"
        )
    if as_json:
        plan = [{"command": cfg.command, **cfg.settings_dict()} for cfg in experiment.runs]
        print_json({"file": str(file), "description": experiment.description, "runs": plan})
        return
    runs = "the run" if count == 1 else f"all {count} runs"
    say("", f"all checks passed: {runs} ready to train ({experiment.command()})")


@app.command("run")
def run_experiment(
    file: Annotated[
        Path,
        typer.Argument(
            help="An experiment file (TOML) such as experiments/seed003-compare-apis.toml, or a run's "
            "config.json (or its folder) to redo that run.",
            metavar="FILE",
        ),
    ],
    set_: Annotated[
        list[str] | None,
        typer.Option(
            "--set",
            help="Override a setting in every run that has it: KEY=VALUE (repeatable), e.g. --set epochs=1 --set dataset=shapes.",
            show_default=False,
        ),
    ] = None,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            "--dry-run",
            help="Check the file and print its runs with their resolved settings, without training.",
        ),
    ] = False,
    resume: Annotated[
        bool,
        typer.Option(
            "--resume",
            help="Finish an interrupted `kcnn run` of this file: runs it completed are kept, the "
            "interrupted one continues from its checkpoint, the rest train, then the comparison.",
        ),
    ] = False,
    mlflow: Annotated[
        str | None,
        typer.Option("--mlflow", help=MLFLOW_HELP, show_default=False, metavar="[URI]"),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Run the experiment(s) an experiment file describes, one after the other, or redo a run."""
    from kcnn.commands import experiments

    experiment = experiments.load(file, experiments.parse_overrides(set_ or []))
    experiment.set_args = list(set_ or [])
    if check:
        return _check(file, experiment, as_json)
    with tracked(mlflow):
        summaries = experiments.run(experiment, quiet=as_json, resume=resume)
    for cfg, summary in zip(experiment.runs, summaries, strict=False):  # the comparison comes last
        calibrated = _calibrate_after(cfg.calibrate, summary["run_dirs"])
        if calibrated is not None:
            summary["calibration"] = calibrated
    if as_json:
        print_json({"file": str(file), "runs": summaries})
        return
    from kcnn.runs.browse import RunInfo

    for s in summaries:
        where = s.get("group") or s.get("comparison") or ", ".join(s.get("run_dirs", []))
        accuracy = f"test accuracy {s['test_accuracy']:.4f}, " if "test_accuracy" in s else ""
        if accuracy and len(s.get("run_dirs") or []) == 1:  # one run: with its 95% interval
            interval = RunInfo.load(s["run_dirs"][0]).accuracy_interval
            accuracy = f"test accuracy {interval.text()}, " if interval else accuracy
        say(f"{s['command']}: {accuracy}results in {where}")
    runs = [d for s in summaries if s["command"] != "compare" for d in s["run_dirs"]]
    if len(runs) > 1:
        show_runs_table(runs)
