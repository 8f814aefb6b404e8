"""`kcnn train`, `kcnn transfer`, `kcnn compare-apis` and `kcnn run`: the commands that train."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kcnn import defaults
from kcnn.cli.app import (
    AsJson,
    BatchSize,
    DataDir,
    Dataset,
    Epochs,
    ImageSize,
    Limit,
    Lr,
    Out,
    Seed,
    ValSplit,
    app,
    print_json,
)
from kcnn.errors import KcnnError


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
        print_json(m)
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
        print_json(
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
            print_json({"proof": e.proof.as_dict()})
        raise
    if as_json:
        print_json(result.as_dict())
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
            print_json({"file": str(file), "description": experiment.description, "runs": plan})
        else:
            typer.echo(f"{file}: {experiment.description}")
            for step in plan:
                typer.echo("  " + ", ".join(f"{k}={v}" for k, v in step.items() if v is not None))
        return
    summaries = experiments.run(experiment, quiet=as_json)
    if as_json:
        print_json({"file": str(file), "runs": summaries})
        return
    for s in summaries:
        where = s.get("run_dir") or s.get("folder") or ", ".join(s.get("run_dirs", []))
        accuracy = f"test accuracy {s['test_accuracy']:.4f}, " if "test_accuracy" in s else ""
        typer.echo(f"{s['command']}: {accuracy}results in {where}")
