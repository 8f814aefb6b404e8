"""The Typer application, the global options, and the options the training commands share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

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


def print_json(data) -> None:
    from kcnn.runs.records import json_text

    typer.echo(json_text(data))
