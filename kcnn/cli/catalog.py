"""`kcnn list` and `kcnn summary`: what kcnn knows, without training anything."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from kcnn import defaults
from kcnn.cli.app import (
    AsJson,
    app,
    print_json,
)
from kcnn.errors import KcnnError


class ListWhat(StrEnum):
    models = "models"
    datasets = "datasets"
    backbones = "backbones"


@app.command("list")
def list_(
    what: Annotated[
        ListWhat | None,
        typer.Argument(
            help="models, datasets or backbones [default: all three].", show_default=False
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
        print_json(
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
            "--input-shape must be three positive whole numbers H,W,C such as 224,224,3; got "
            + repr(text if len(text) <= 60 else text[:60] + "...")
        )
    return values  # type: ignore[return-value]


@app.command()
def summary(
    arch: Annotated[str, typer.Argument(help="Architecture name (see `kcnn list models`).")],
    api: Annotated[
        str, typer.Option(help="Model-building style.", metavar="|".join(defaults.APIS))
    ] = defaults.API,
    input_shape: Annotated[
        str | None,
        typer.Option(
            help="H,W,C [default: the architecture's reference input].", show_default=False
        ),
    ] = None,
    classes: Annotated[
        int | None,
        typer.Option(
            help="Output classes [default: the reference class count].", show_default=False
        ),
    ] = None,
    profile: Annotated[
        bool,
        typer.Option(
            "--profile",
            help="Also time one forward pass on this machine, layer by layer: each layer inside "
            "the network, the times adding up to the pass.",
        ),
    ] = False,
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

    report = summarize(arch, api, shape, classes, profile)
    if as_json:
        print_json(report)
    else:
        typer.echo(report["text"])
