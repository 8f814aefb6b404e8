"""The `kcnn` command line: thin Typer commands over the library.

Importing this module must stay cheap: TensorFlow is imported inside the commands that train
or build models, never at the top, so `kcnn --help` and `kcnn list` answer at once.
"""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from kcnn import defaults
from kcnn.errors import KcnnError

app = typer.Typer(
    help="Build, train, compare and understand convolutional networks (Keras 3).",
    no_args_is_help=True,
    rich_markup_mode="rich",
    pretty_exceptions_enable=False,
    add_completion=False,
)

_debug = False


@app.callback()
def _options(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when a command fails.")
    ] = False,
) -> None:
    global _debug
    _debug = debug


# Options shared by the training commands: one definition each.
Dataset = Annotated[
    str,
    typer.Option(
        help="A registered data set (see `kcnn list datasets`), an image folder, or an .npz file."
    ),
]
DataDir = Annotated[
    Path | None,
    typer.Option(
        help="Folder holding the data set's original files (e.g. mnist.npz, IDX files, cifar-10-batches-py/)."
    ),
]
Epochs = Annotated[int, typer.Option(help="Training epochs.")]
BatchSize = Annotated[int, typer.Option(help="Images per batch.")]
Lr = Annotated[
    float | None,
    typer.Option(help="Learning rate \\[default: the optimizer's usual rate].", show_default=False),
]
Seed = Annotated[int, typer.Option(help="Seed for the split, weight initialisation and shuffling.")]
ValSplit = Annotated[
    float, typer.Option(help="Fraction of the training images held out for validation.")
]
Limit = Annotated[
    int | None,
    typer.Option(
        help="Use at most N training (and N test) images, stratified: for quick runs.",
        show_default=False,
    ),
]
ImageSize = Annotated[
    int | None,
    typer.Option(
        help="Resize (or pad) images to N×N inside the input pipeline.", show_default=False
    ),
]
Out = Annotated[Path, typer.Option(help="Folder that receives the run folders.")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def _print_json(data) -> None:
    from kcnn.runs.records import json_text

    typer.echo(json_text(data))


@app.command()
def train(
    ctx: typer.Context,
    arch: Annotated[
        str | None,
        typer.Argument(help="Architecture name (see `kcnn list models`).", show_default=False),
    ] = None,
    dataset: Dataset = "mnist",
    data_dir: DataDir = None,
    api: Annotated[
        str, typer.Option(help="Model-building style: sequential, functional or subclassed.")
    ] = defaults.API,
    epochs: Epochs = defaults.EPOCHS,
    batch_size: BatchSize = defaults.BATCH_SIZE,
    optimizer: Annotated[str, typer.Option(help="adam, sgd or rmsprop.")] = defaults.OPTIMIZER,
    lr: Lr = None,
    seed: Seed = defaults.SEED,
    val_split: ValSplit = defaults.VAL_SPLIT,
    limit: Limit = None,
    image_size: ImageSize = None,
    out: Out = Path(defaults.OUT_DIR),
    name: Annotated[
        str | None, typer.Option(help="Run name \\[default: ARCH-DATASET-API].", show_default=False)
    ] = None,
    resume: Annotated[
        Path | None,
        typer.Option(
            help="Continue the interrupted run in this folder with its own settings (--epochs may raise the total).",
            show_default=False,
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Train one architecture, evaluate it on the test set, and save a run folder."""

    def given(param: str) -> bool:
        source = ctx.get_parameter_source(param)
        return source is not None and source.name != "DEFAULT"

    if resume is not None:
        extra = [p for p in ctx.params if p not in ("resume", "epochs", "as_json") and given(p)]
        if extra:
            raise KcnnError(
                f"--resume continues a run with its own settings; drop {', '.join(extra)} "
                "(only --epochs and --json may be given)"
            )
        from kcnn.engine.checkpoints import resume as resume_run

        result = resume_run(resume, epochs if given("epochs") else None, quiet=as_json)
    else:
        if arch is None:
            raise KcnnError(
                "name an architecture to train (see `kcnn list models`), or pass --resume RUN_DIR"
            )
        from kcnn.engine.training import TrainConfig
        from kcnn.engine.training import train as run_training

        config = TrainConfig(
            arch,
            dataset=dataset,
            data_dir=str(data_dir) if data_dir else None,
            api=api,
            epochs=epochs,
            batch_size=batch_size,
            optimizer=optimizer,
            lr=lr,
            seed=seed,
            val_split=val_split,
            limit=limit,
            image_size=image_size,
            out=str(out),
            name=name,
        )
        result = run_training(config, quiet=as_json)
    m = result.metrics
    if as_json:
        _print_json(m)
        return
    fallback = (
        " (mnist-5k fallback: full MNIST was unavailable)" if m.get("dataset_fallback") else ""
    )
    typer.echo(
        f"test accuracy {m['test_accuracy']:.4f}  test loss {m['test_loss']:.4f}  "
        f"on {m['dataset']}{fallback}"
    )
    typer.echo(f"run folder: {result.run_dir}")


@app.command()
def transfer(
    backbone: Annotated[
        list[str],
        typer.Argument(
            help="vgg16, mobilenetv2, resnet50v2, or all (see `kcnn list backbones`); several give a comparison report.",
            show_default=False,
        ),
    ],
    dataset: Dataset = defaults.TRANSFER_DATASET,
    data_dir: DataDir = None,
    weights: Annotated[
        str,
        typer.Option(
            help="imagenet (Keras cache or download), none (random initialisation), or the path of a weights file."
        ),
    ] = defaults.TRANSFER_WEIGHTS,
    head: Annotated[
        str,
        typer.Option(
            help="seed: Flatten, Dense 128, Dense 64, softmax (seed 003); gap: global average pooling, dropout, softmax."
        ),
    ] = defaults.TRANSFER_HEAD,
    image_size: Annotated[
        int | None,
        typer.Option(
            help="Upsample images to N×N inside the input pipeline (e.g. 224, the backbones' ImageNet size); default: the data's own size, at least 32.",
            show_default=False,
        ),
    ] = None,
    fine_tune: Annotated[
        int,
        typer.Option(
            help="After the frozen phase, unfreeze the top N backbone layers (BatchNorm stays frozen) and train again."
        ),
    ] = 0,
    fine_tune_lr: Annotated[
        float, typer.Option(help="Learning rate of the fine-tune phase.")
    ] = defaults.FINE_TUNE_LR,
    fine_tune_epochs: Annotated[
        int | None,
        typer.Option(
            help="Epochs of the fine-tune phase (default: as many as --epochs).", show_default=False
        ),
    ] = None,
    cache_features: Annotated[
        bool,
        typer.Option(
            "--cache-features/--no-cache-features",
            help="Compute the frozen backbone's features once and train the head on them (same result, much faster).",
        ),
    ] = True,
    epochs: Epochs = defaults.EPOCHS,
    batch_size: BatchSize = defaults.BATCH_SIZE,
    optimizer: Annotated[str, typer.Option(help="adam, sgd or rmsprop.")] = defaults.OPTIMIZER,
    lr: Lr = None,
    seed: Seed = defaults.SEED,
    val_split: ValSplit = defaults.VAL_SPLIT,
    limit: Limit = None,
    out: Out = Path(defaults.OUT_DIR),
    name: Annotated[
        str | None,
        typer.Option(help="Run name \\[default: BACKBONE-DATASET-HEAD].", show_default=False),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """A frozen ImageNet backbone with a small head (seed 003's transfer experiment, done right)."""
    from kcnn.commands.transfer import TransferConfig
    from kcnn.commands.transfer import transfer as run_transfer

    config = TransferConfig(
        backbone,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        weights=weights,
        head=head,
        image_size=image_size,
        fine_tune=fine_tune,
        fine_tune_lr=fine_tune_lr,
        fine_tune_epochs=fine_tune_epochs,
        cache_features=cache_features,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        seed=seed,
        val_split=val_split,
        limit=limit,
        out=str(out),
        name=name,
    )
    result = run_transfer(config, quiet=as_json)
    if as_json:
        _print_json(
            {
                "comparison": str(result.folder) if result.folder else None,
                "runs": [r.metrics for r in result.runs],
            }
        )
        return
    typer.echo(
        f"\n{'backbone':<12}{'test acc':>9}{'test loss':>10}{'total params':>14}{'trainable':>11}"
        f"{'s/epoch':>9}  weights"
    )
    for r in result.rows:
        typer.echo(
            f"{r['backbone']:<12}{r['test_accuracy']:>9.4f}{r['test_loss']:>10.4f}{r['total_params']:>14,}"
            f"{r['trainable_params']:>11,}{r['seconds_per_epoch']:>9.2f}  {r['weights_source']}"
        )
    if result.folder is not None:
        from kcnn.runs.report import COMPARISON_MD

        typer.echo(f"report: {result.folder / COMPARISON_MD}")
    else:
        typer.echo(f"run folder: {result.runs[0].run_dir}")


class ListWhat(StrEnum):
    models = "models"
    datasets = "datasets"
    backbones = "backbones"


@app.command("list")
def list_(
    what: Annotated[
        ListWhat | None,
        typer.Argument(
            help="models, datasets or backbones \\[default: all three].", show_default=False
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """List the architectures, data sets and transfer backbones kcnn knows."""
    from kcnn.data.datasets import DATASETS
    from kcnn.models.architectures import ARCHITECTURES
    from kcnn.models.backbones import BACKBONES

    models = [
        {
            "name": a.name,
            "family": a.family,
            "year": a.year,
            "reference_params": a.reference_params,
            "reference_input": list(a.input_shape),
            "reference_classes": a.reference_classes,
            "paper": a.paper,
        }
        for a in ARCHITECTURES.values()
    ]
    datasets = [
        {
            "name": d.name,
            "image_shape": list(d.image_shape),
            "classes": d.classes,
            "offline": d.offline,
            "summary": d.summary,
            "source": d.source,
        }
        for d in DATASETS.values()
    ]
    show_models, show_data = what in (None, ListWhat.models), what in (None, ListWhat.datasets)
    show_backbones = what in (None, ListWhat.backbones)
    backbones = [
        {"name": b.name, "paper": b.paper, "keras": b.constructor} for b in BACKBONES.values()
    ]
    if as_json:
        _print_json(
            {
                **({"models": models} if show_models else {}),
                **({"datasets": datasets} if show_data else {}),
                **({"backbones": backbones} if show_backbones else {}),
            }
        )
        return
    if show_models:
        typer.echo(
            f"{'model':<12} {'family':<10} {'year':>4}  {'reference params':>16}  default input"
        )
        for m in models:
            params = f"{m['reference_params']:,}" if m["reference_params"] else "-"
            h, w, c = m["reference_input"]
            typer.echo(
                f"{m['name']:<12} {m['family']:<10} {m['year']:>4}  {params:>16}  {h}×{w}×{c}, {m['reference_classes']} classes"
            )
    if show_models and show_data:
        typer.echo("")
    if show_data:
        typer.echo(f"{'dataset':<14} {'images':<9} {'classes':>7}  {'offline':<7}  source")
        for d in datasets:
            h, w, c = d["image_shape"]
            typer.echo(
                f"{d['name']:<14} {f'{h}×{w}×{c}':<9} {d['classes']:>7}  {'yes' if d['offline'] else 'no':<7}  {d['source']}"
            )
        typer.echo(
            "Also: a folder with one subfolder per class (optionally train/ and test/), or an .npz file "
            "with x_train, y_train, x_test, y_test."
        )
    if show_backbones:
        if show_models or show_data:
            typer.echo("")
        typer.echo(f"{'backbone':<12} {'keras.applications':<45} paper  (for `kcnn transfer`)")
        for b in backbones:
            typer.echo(
                f"{b['name']:<12} {b['keras'].removeprefix('keras.applications.'):<45} {b['paper'].split(',')[0]}"
            )


def parse_shape(text: str) -> tuple[int, int, int]:
    parts = text.replace("x", ",").replace("×", ",").split(",")
    try:
        values = tuple(int(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or min(values) <= 0:
        raise KcnnError(
            f"--input-shape must be three positive whole numbers H,W,C such as 224,224,3; got {text!r}"
        )
    return values  # type: ignore[return-value]


@app.command()
def summary(
    arch: Annotated[str, typer.Argument(help="Architecture name (see `kcnn list models`).")],
    api: Annotated[str, typer.Option(help="sequential, functional or subclassed.")] = defaults.API,
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="H,W,C \\[default: the architecture's reference input].", show_default=False
        ),
    ] = None,
    classes: Annotated[
        int | None,
        typer.Option(
            help="Output classes \\[default: the reference class count].", show_default=False
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Show an architecture layer by layer: output shapes, parameters, multiply-adds, receptive fields, and the output-size formula checked against Keras."""
    from kcnn.models.architectures import get

    architecture = get(arch)
    shape = parse_shape(input_shape) if input_shape else architecture.input_shape
    classes = architecture.reference_classes if classes is None else classes
    if classes < 2:
        raise KcnnError(f"--classes must be at least 2, got {classes}")
    from kcnn.models.summary import summarize

    report = summarize(arch, api, shape, classes)
    if as_json:
        _print_json(report)
    else:
        typer.echo(report["text"])


@app.command("compare-apis")
def compare_apis(
    arch: Annotated[
        str, typer.Argument(help="Architecture name (see `kcnn list models`).")
    ] = defaults.COMPARE_ARCH,
    dataset: Dataset = defaults.COMPARE_DATASET,
    data_dir: DataDir = None,
    epochs: Epochs = defaults.COMPARE_EPOCHS,
    batch_size: BatchSize = defaults.BATCH_SIZE,
    optimizer: Annotated[str, typer.Option(help="adam, sgd or rmsprop.")] = defaults.OPTIMIZER,
    lr: Lr = None,
    seed: Seed = defaults.SEED,
    val_split: ValSplit = defaults.VAL_SPLIT,
    limit: Limit = None,
    image_size: ImageSize = None,
    same_init: Annotated[
        bool,
        typer.Option(
            "--same-init/--independent-init",
            help="Start all three forms from the same weights (curves coincide), or initialise each on its own (seed-to-seed spread).",
        ),
    ] = True,
    out: Out = Path(defaults.OUT_DIR),
    as_json: AsJson = False,
) -> None:
    """The same CNN as Sequential, Functional and subclassed models: proven identical, then trained side by side."""
    from kcnn.commands.compare import CompareConfig
    from kcnn.commands.compare import compare_apis as run_comparison
    from kcnn.errors import ModelMismatchError
    from kcnn.runs.report import COMPARISON_MD

    config = CompareConfig(
        arch,
        dataset=dataset,
        data_dir=str(data_dir) if data_dir else None,
        epochs=epochs,
        batch_size=batch_size,
        optimizer=optimizer,
        lr=lr,
        seed=seed,
        val_split=val_split,
        limit=limit,
        image_size=image_size,
        same_init=same_init,
        out=str(out),
    )

    def show_proof(proof) -> None:
        if not as_json:
            typer.echo(
                f"{arch} in {len(proof.forms)} forms: proof before training "
                f"(weights of {proof.reference} copied into the others)\n{proof.text()}\n"
            )

    try:
        result = run_comparison(config, on_proof=show_proof, quiet=as_json)
    except ModelMismatchError as e:
        if as_json and getattr(e, "proof", None) is not None:
            _print_json({"proof": e.proof.as_dict()})
        raise
    if as_json:
        _print_json(result.as_dict())
        return
    typer.echo(
        f"\n{'form':<12}{'test acc':>9}{'test loss':>10}{'best val acc':>13}{'build s':>9}{'s/epoch':>9}{'images/s':>10}"
    )
    for r in result.rows:
        typer.echo(
            f"{r['form']:<12}{r['test_accuracy']:>9.4f}{r['test_loss']:>10.4f}{r['best_val_accuracy']:>13.4f}"
            f"{r['build_seconds']:>9.3f}{r['seconds_per_epoch']:>9.2f}{r['images_per_second'] or 0:>10,.0f}"
        )
    typer.echo(
        f"test accuracy spread {result.agreement['test_accuracy_spread']:.4f} "
        f"({'same' if same_init else 'independent'} initial weights)"
    )
    typer.echo(f"report: {result.folder / COMPARISON_MD}")


@app.command("run")
def run_experiment(
    file: Annotated[
        Path,
        typer.Argument(
            help="An experiment file (TOML), such as experiments/seed003-compare-apis.toml."
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
        bool, typer.Option("--check", help="Validate the file and print its runs without training.")
    ] = False,
    as_json: AsJson = False,
) -> None:
    """Run the experiment(s) an experiment file describes, one after the other."""
    from kcnn.commands import experiments

    experiment = experiments.load(file, experiments.parse_overrides(set_ or []))
    if check:
        import dataclasses

        plan = [{"command": c, **dataclasses.asdict(cfg)} for c, cfg in experiment.runs]
        if as_json:
            _print_json({"file": str(file), "description": experiment.description, "runs": plan})
        else:
            typer.echo(f"{file}: {experiment.description}")
            for step in plan:
                typer.echo("  " + ", ".join(f"{k}={v}" for k, v in step.items() if v is not None))
        return
    summaries = experiments.run(experiment, quiet=as_json)
    if as_json:
        _print_json({"file": str(file), "runs": summaries})
        return
    for s in summaries:
        where = s.get("run_dir") or s.get("folder") or ", ".join(s.get("run_dirs", []))
        accuracy = f"test accuracy {s['test_accuracy']:.4f}, " if "test_accuracy" in s else ""
        typer.echo(f"{s['command']}: {accuracy}results in {where}")


def main(argv: list[str] | None = None) -> None:
    """The console script: runs the app, turning a KcnnError into one line and its exit status."""
    from kcnn.engine.interrupts import exit_on_signals

    try:
        with exit_on_signals():  # Ctrl-C / SIGTERM exit 130 / 143 with one line, never "Aborted!"
            app(args=argv, prog_name="kcnn")
    except KcnnError as e:
        if _debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        sys.exit(e.exit_code)


if __name__ == "__main__":
    main()
