"""`kcnn list` and `kcnn summary`: what kcnn knows, without training anything."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

import typer

from kcnn import defaults
from kcnn.cli.app import AsJson, app, print_json
from kcnn.errors import KcnnError
from kcnn.models.backbones import BACKBONES
from kcnn.runs import tables


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
    shown = {key: rows for key, rows in _catalog().items() if what is None or what.value == key}
    if as_json:
        print_json(shown)
        return
    parts = []
    if "models" in shown:
        rows = [
            {
                **m,
                "year": str(m["year"]),  # a year, not a count
                "reference_params": m["reference_params"] or "-",
                "input": "{}×{}×{}, {} classes".format(
                    *m["reference_input"], m["reference_classes"]
                ),
            }
            for m in shown["models"]
        ]
        columns = ["name", "family", "year", "reference_params", "input"]
        parts.append(
            tables.as_text(
                rows, columns, ["model", "family", "year", "reference params", "default input"]
            )
        )
    if "datasets" in shown:
        rows = [
            {**d, "images": "×".join(map(str, d["image_shape"])), "offline": d["offline"]}
            for d in shown["datasets"]
        ]
        columns = ["name", "images", "classes", "offline", "source"]
        parts.append(
            tables.as_text(rows, columns, ["dataset", "images", "classes", "offline", "source"])
            + "\nAlso: a folder with one subfolder per class (optionally train/ and test/), or "
            "an .npz file with x_train, y_train, x_test, y_test."
        )
    if "backbones" in shown:
        rows = [
            {
                **b,
                "keras": b["keras"].removeprefix("keras.applications."),
                "paper": b["paper"].split(",")[0],
            }
            for b in shown["backbones"]
        ]
        headers = ["backbone", "keras.applications", "paper  (for `kcnn transfer`)"]
        parts.append(tables.as_text(rows, ["name", "keras", "paper"], headers))
    typer.echo("\n\n".join(parts))


def _catalog() -> dict[str, list[dict]]:
    """Every architecture, data set and backbone kcnn knows, as `--json` lists them."""
    from kcnn.data.datasets import DATASETS  # NumPy: not for `kcnn --help`
    from kcnn.models.architectures import ARCHITECTURES  # not for `kcnn --help` (its start-up)

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
    backbones = [
        {"name": b.name, "paper": b.paper, "keras": b.constructor} for b in BACKBONES.values()
    ]
    return {"models": models, "datasets": datasets, "backbones": backbones}


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
    from kcnn.models.architectures import get  # not for `kcnn --help` (its start-up)

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
