"""`kcnn train`, `kcnn compare-apis`, `kcnn transfer` and `kcnn run`: the commands that train.

Each training command is made from its entry in the registry (`kcnn.commands.registry`): its
options from its configuration model (`kcnn.cli.options`), its work from the runner
(`kcnn.commands.runner`, `kcnn.commands.steps`), which is loaded only when a command runs, so
`kcnn --help` answers at once. This module parses and prints, nothing more.
Under `--json` every one of them prints one shape: `{"command", "runs": [metrics.json of each
run], "comparison": folder or null, ...}` (`Outcome.answer`).
"""

from __future__ import annotations

import dataclasses
import inspect
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from kcnn.cli.app import AsJson, app, print_json, say
from kcnn.cli.options import MLFLOW_HELP, Tracked, given, resolve, tracked, training_command
from kcnn.commands import registry
from kcnn.commands.registry import Entry
from kcnn.engine.config import CONFIGURATION
from kcnn.errors import KcnnError
from kcnn.progress import heading

if TYPE_CHECKING:
    from kcnn.commands.command import Outcome
    from kcnn.commands.experiments import Experiment

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


def _names_nothing(command: Entry, values: dict[str, Any]) -> bool:
    """Whether the command line leaves out what the command trains, which has no default
    (`kcnn train` without an architecture)."""
    fields = {f.name: f for f in dataclasses.fields(command.config)}
    return any(
        spec.argument and fields[key].default is dataclasses.MISSING and not values.get(key)
        for key, spec in command.config.settings().items()
    )


def _group(command: Entry, folder: Path) -> bool:
    """Whether `--resume FOLDER` names a group (`--seeds`, `--folds`) this command made."""
    from kcnn.runs import groups  # NumPy: not for `kcnn --help`

    return folder.expanduser().is_dir() and groups.made_by(folder.expanduser(), command.name)


def _finish_group(folder: Path, quiet: bool) -> Outcome:
    """`--resume GROUP`: its unfinished seeds or folds trained, the finished ones kept, and
    the group summarised again (as `kcnn run GROUP` does)."""
    from kcnn.commands import experiments, runner  # the trainer: not for `kcnn --help`

    folder = folder.expanduser()
    (config,) = experiments.load(folder).runs  # its settings, writing where it is
    return runner.execute(config, quiet=quiet, resume=True, group=folder)


def _work(command: Entry):
    """What `kcnn COMMAND` does with its parsed options."""

    def work(ctx: typer.Context, resume: Path | None, config_file, print_config, as_json, **values):
        from kcnn.commands import runner, steps  # the trainer: not for `kcnn --help`

        if resume is not None:
            _only_resume(ctx, values, config_file, print_config, command.resume_options)
            options = {k: values[k] for k in command.resume_options if given(ctx, k)}
            if not options and _group(command, resume):
                return show(_finish_group(resume, as_json), as_json)
            return show(steps.resume_one(command.name, resume, quiet=as_json, **options), as_json)
        if config_file is None and _names_nothing(command, values):
            raise KcnnError(command.needs)
        config = resolve(command.config, ctx, values, config_file)
        if print_config:
            return typer.echo(config.to_toml(), nl=False)
        show(runner.execute(config, quiet=as_json), as_json)

    return work


def show(outcome: Outcome, as_json: bool) -> None:
    """A training command's result: its JSON answer, or what it says to a person (every line's
    control characters shown as escapes) and what calibration found."""
    from kcnn.use import calibration  # NumPy: not for `kcnn --help`

    if as_json:
        print_json(outcome.answer())
        return
    say(*outcome.lines)
    for record in outcome.calibration or []:  # what --calibrate found
        typer.echo(f"calibrated: temperature {record['temperature']:.4f}")
        typer.echo("\n".join(calibration.lines(record)))


for _entry in registry.COMMANDS.values():
    training_command(_entry.config, _work(_entry), help=_entry.help, extra=[RESUME])


# --- kcnn run ---------------------------------------------------------------------------------------


def _check(file: Path, experiment: Experiment, as_json: bool) -> None:
    """`kcnn run FILE --check`: each run under its heading with the settings that matter to it,
    checked as it would be before training (`preflight`), with the trainings and epochs it
    stands for; a last line says whether all passed and how much the file asks for."""
    from kcnn.commands import experiments  # the runs' commands: not for `kcnn --help`

    count = len(experiment.runs)
    if not as_json:
        say(f"{file}: {experiment.description}" if experiment.description else str(file))
    failed = []
    for number, cfg in enumerate(experiment.runs, 1):
        if not as_json:
            heading(number, count, experiments.title(cfg))
            body = cfg.to_toml(only_applicable=True).split("[[run]]\n", 1)[1].rstrip()
            say(*(f"  {line}" for line in body.splitlines()))
            say(f"  {experiments.workload(cfg).text()}")
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
    _checked(file, experiment, as_json)


def _checked(file: Path, experiment: Experiment, as_json: bool) -> None:
    """The end of `--check`: how much the file asks for, and that every run is ready."""
    from kcnn.commands import experiments  # the runs' commands: not for `kcnn --help`

    loads = [experiments.workload(cfg) for cfg in experiment.runs]
    total = experiments.Workload(sum(w.trainings for w in loads), sum(w.epochs for w in loads))
    if as_json:
        plan = [{"command": cfg.command, **cfg.settings_dict()} for cfg in experiment.runs]
        each = [{"trainings": w.trainings, "epochs_in_all": w.epochs} for w in loads]
        print_json(
            {"file": str(file), "description": experiment.description, "runs": plan,
             "workload": {"runs": each, "trainings": total.trainings,
                          "epochs_in_all": total.epochs}}
        )  # fmt: skip
        return
    counted = [
        f"note: --set seeds={v} is a count: {v} seeds from each run's seed (seed 83 alone is "
        f"--set seed={v})"
        for k, v in experiments.parse_overrides(experiment.set_args).items()
        if k == "seeds" and isinstance(v, int) and not isinstance(v, bool)
    ]
    runs = "the run" if len(loads) == 1 else f"all {len(loads)} runs"
    say(
        "",
        *counted,
        f"all checks passed: {runs} ready to train, {total.text()} ({experiment.command()})",
    )


@app.command("run", cls=Tracked)
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
            help="Check the file and print its runs with their resolved settings and how many "
            "trainings and epochs they are, without training.",
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
    from kcnn.commands import experiments  # the runs' commands: not for `kcnn --help`
    from kcnn.commands.command import runs_table

    experiment = experiments.load(file, experiments.parse_overrides(set_ or []))
    experiment.set_args = list(set_ or [])
    if check:
        return _check(file, experiment, as_json)
    with tracked(mlflow):
        summaries = experiments.run(experiment, quiet=as_json, resume=resume)
    if as_json:
        print_json({"file": str(file), "runs": summaries})
        return
    for s in summaries:
        where = s.get("group") or s.get("comparison") or ", ".join(s.get("run_dirs", []))
        accuracy = f"test accuracy {s['test_accuracy']:.4f}, " if "test_accuracy" in s else ""
        say(f"{s['command']}: {accuracy}results in {where}")
    run_dirs = [d for s in summaries if s["command"] != "compare" for d in s["run_dirs"]]
    if len(run_dirs) > 1:
        say("", *runs_table(run_dirs).splitlines())
