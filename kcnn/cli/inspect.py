"""`kcnn inspect`, `kcnn calibrate` and `kcnn lr-find`: understanding a trained network (its
errors, its confidence, its robustness) and choosing a learning rate before training."""

from __future__ import annotations

import inspect as signature
from pathlib import Path
from typing import Annotated, Any

import typer

from kcnn import defaults
from kcnn.cli.app import AsJson, Tta, app, print_json, say
from kcnn.cli.options import (
    AS_JSON,
    CONFIG_FILE,
    CONTEXT,
    fold_negatives,
    resolve,
    setting_parameters,
)
from kcnn.engine.config import TrainConfig
from kcnn.errors import KcnnError

Run = Annotated[str, typer.Argument(help="A run folder (or its name under runs/).")]
Limit = Annotated[
    int | None,
    typer.Option(
        help="Use a stratified subset of at most N test (and validation) images "
        "[default: the whole split].",
        show_default=False,
        metavar="N",
    ),
]


def _check_limit(limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise KcnnError(f"--limit {limit}: give at least 1 image, or drop --limit")


def _report(folder: Path) -> None:
    from kcnn.runs import html  # not for `kcnn --help` (its start-up)

    html.write_report_after(folder)  # the report now shows the new sections


@app.command("inspect")
def inspect_run(
    run: Run,
    errors: Annotated[
        bool, typer.Option("--errors", help="Confused pairs, per-class accuracy, top losses.")
    ] = False,
    calibration: Annotated[
        bool, typer.Option("--calibration", help="ECE, MCE, Brier, NLL, reliability diagram.")
    ] = False,
    robustness: Annotated[
        bool,
        typer.Option(
            "--robustness",
            help="Accuracy under 8 corruptions × 5 severities (5 of CIFAR-10-C's, 3 of kcnn's).",
        ),
    ] = False,
    draws: Annotated[
        int,
        typer.Option(
            help="Draws of each random corruption (noise, rotation, translation, occlusion): "
            "its accuracy is their mean, beside their spread.",
            metavar="N",
        ),
    ] = defaults.ROBUSTNESS_DRAWS,
    limit: Limit = None,
    tta: Tta = None,
    as_json: AsJson = False,
) -> None:
    """A trained run's errors, calibration and robustness on its own test split (all three when none is named), into RUN/inspect/ and report.html."""
    from kcnn.use import calibration as calibrating  # NumPy: not for `kcnn --help`
    from kcnn.use import errors as erring  # NumPy: not for `kcnn --help`
    from kcnn.use import predict as use  # NumPy: not for `kcnn --help`
    from kcnn.use import robustness as corrupting  # NumPy: not for `kcnn --help`

    _check_limit(limit)
    if not 1 <= draws <= defaults.MAX_ROBUSTNESS_DRAWS:
        raise KcnnError(f"--draws {draws}: give 1 to {defaults.MAX_ROBUSTNESS_DRAWS} draws")
    everything = not (errors or calibration or robustness)
    loaded = use.load(run, tta=tta)
    answer: dict[str, Any] = {"run": str(loaded.info.folder)}  # each part names its tta
    if errors or everything:
        answer["errors"] = erring.analyse(loaded, limit)
    if calibration or everything:
        answer["calibration"] = calibrating.calibrate(loaded, fit=False, limit=limit)
    if robustness or everything:
        answer["robustness"] = corrupting.evaluate(loaded, limit, draws=draws)
    _report(loaded.info.folder)
    if as_json:
        print_json(answer)
        return
    say(*_lines(answer))  # class names are the data's: shown, never sent raw


def _lines(answer: dict[str, Any]) -> list[str]:
    from kcnn.use import calibration  # NumPy: not for `kcnn --help`

    lines = [f"run: {answer['run']}"]
    e = answer.get("errors")
    if e:
        lines.append(
            f"errors: {e['misclassified']} of {e['images']} test images misclassified "
            f"(accuracy {e['accuracy']:.4f})"
        )
        for pair in e["confused_pairs"][:5]:
            lines.append(
                f"  {pair['true_name']} taken for {pair['predicted_name']}: {pair['count']} "
                f"({pair['share_of_true']:.1%} of {pair['true_name']})"
            )
        worst = ", ".join(f"{r['name']} {r['accuracy']:.3f}" for r in e["per_class_accuracy"][:5])
        lines.append(f"  worst classes: {worst}")
        if e.get("misclassified_csv"):
            lines.append("  misclassified files: inspect/misclassified.csv")
    c = answer.get("calibration")
    if c:
        lines += calibration.lines(c)
    r = answer.get("robustness")
    if r:
        lines += _robustness_lines(r)
    lines.append(f"report: {Path(answer['run']) / 'report.html'}")
    return lines


SOURCES = {"CIFAR-10-C": "CIFAR-10-C's five", "kcnn": "kcnn's three"}


def _robustness_lines(r: dict[str, Any]) -> list[str]:
    by = r["by_source"]
    lines = [
        f"robustness: clean accuracy {r['clean_accuracy']:.4f}, mean corruption error "
        f"{r['mean_corruption_error']:.4f} (relative {r['relative_mean_corruption_error']:+.4f}; "
        + "; ".join(f"{SOURCES.get(source, source)} {m['mean']:.4f}" for source, m in by.items())
        + ")",
        f"  accuracy at severities 1-{r['severities']}; a random corruption: mean ± SD of "
        f"{r['draws']} draws",
    ]
    for name, accs in r["accuracy"].items():
        about, sds = r["corruptions"][name], r["accuracy_sd"][name]
        shown = [
            f"{a:.3f}±{sd:.3f}" if about["draws"] > 1 else f"{a:.3f}"
            for a, sd in zip(accs, sds, strict=True)
        ]
        lines.append(f"  {name + ' (' + about['source'] + ')':<30}" + " ".join(shown))
    return lines


@app.command("calibrate")
def calibrate(run: Run, limit: Limit = None, as_json: AsJson = False) -> None:
    """Fit temperature scaling on a run's validation split (Guo et al. 2017): `kcnn predict` then gives calibrated probabilities."""
    from kcnn.use import calibration  # NumPy: not for `kcnn --help`
    from kcnn.use import predict as use  # NumPy: not for `kcnn --help`

    _check_limit(limit)
    loaded = use.load(run)
    record = calibration.calibrate(loaded, fit=True, limit=limit)
    _report(loaded.info.folder)
    if as_json:
        print_json({"run": str(loaded.info.folder), "calibration": record})
        return
    fit = record["fit"]
    typer.echo(
        f"temperature {fit['temperature']:.4f} (validation NLL {fit['validation_nll_before']:.4f} "
        f"-> {fit['validation_nll_after']:.4f} on {fit['validation_images']} images)"
    )
    typer.echo("\n".join(calibration.lines(record)))
    say(f"kcnn predict {loaded.info.folder} now gives calibrated probabilities")


# --- kcnn lr-find ---------------------------------------------------------------------------------


def _option(name: str, annotation, default) -> signature.Parameter:
    return signature.Parameter(
        name, signature.Parameter.KEYWORD_ONLY, default=default, annotation=annotation
    )


LR_FIND_OPTIONS = [
    _option(
        "steps",
        Annotated[
            int | None,
            typer.Option(
                help="Steps of the sweep [default: one epoch, at least 100].", show_default=False
            ),
        ],
        None,
    ),
    _option("start_lr", Annotated[float, typer.Option(help="The first rate.")], 1e-7),
    _option("end_lr", Annotated[float, typer.Option(help="The last rate.")], 10.0),
]


def _lr_find(ctx: typer.Context, steps, start_lr, end_lr, config_file, as_json, **values) -> None:
    from kcnn.use.lr_find import check_sweep, lr_find  # NumPy: not for `kcnn --help`

    check_sweep(steps, start_lr, end_lr)  # before the settings' checks, which load TensorFlow
    if values.get("arch") is None and config_file is None:
        raise KcnnError("name an architecture (see `kcnn list models`)")
    config = resolve(TrainConfig, ctx, values, config_file)

    record = lr_find(config, steps, start_lr, end_lr)
    if as_json:
        print_json({k: record[k] for k in ("folder", "suggestions", "steps_done", "seconds")})
        return
    s = record["suggestions"]

    def rate(value):
        return "none (sweep too short)" if value is None else f"{value:.2e}"

    typer.echo(
        f"suggested learning rates (fastai's rules): valley {rate(s['valley'])} (fastai's "
        f"default), steep {rate(s['steep'])}, minimum ÷ 10 {rate(s['minimum'])}  "
        f"({record['steps_done']} steps)"
    )
    say(f"records: {record['folder']}")


def _register_lr_find() -> None:
    """`kcnn lr-find ARCH [training options]`: the options of `kcnn train`, from TrainConfig, so
    the sweep trains what `kcnn train` with those options would."""
    settings = [
        p
        for k, spec in TrainConfig.settings().items()
        for p in setting_parameters(TrainConfig, k, spec)
    ]
    parameters = [CONTEXT, *settings, *LR_FIND_OPTIONS, CONFIG_FILE, AS_JSON]

    def command(ctx: typer.Context, **values: Any) -> None:
        _lr_find(ctx, **fold_negatives(ctx, values))

    command.__signature__ = signature.Signature(parameters)
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    help_text = (
        "The learning-rate range test (Smith 2017, fastai lr_find): an exponential sweep of the "
        "rate over one epoch with `kcnn train`'s options; prints the suggested rates."
    )
    command.__doc__ = help_text
    app.command("lr-find", help=help_text)(command)


_register_lr_find()
