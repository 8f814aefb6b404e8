"""`kcnn audit DATA`: know the data before training on it (kcnn.use.audit does the work)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kcnn import defaults
from kcnn.cli.app import AsJson, app, print_json, say
from kcnn.errors import KcnnError


@app.command("audit")
def audit_command(
    data: Annotated[
        str,
        typer.Argument(
            help="A data set kcnn trains on (a registered name, an .npz file, an image folder), "
            "or a run folder (its data, split as it was).",
            metavar="DATA",
            show_default=False,
        ),
    ],
    data_dir: Annotated[
        str | None,
        typer.Option(help="Folder holding a Keras data set's original files.", metavar="PATH"),
    ] = None,
    seed: Annotated[int, typer.Option(help="The seed training splits with.")] = defaults.SEED,
    val_split: Annotated[
        float, typer.Option(help="The validation fraction training splits off.")
    ] = defaults.VAL_SPLIT,
    test_split: Annotated[
        float, typer.Option(help="The test fraction held out when the data has no test split.")
    ] = defaults.TEST_SPLIT,
    limit: Annotated[
        int | None,
        typer.Option(
            help="Split as a run with --limit N does (the images it leaves out are `unused`) "
            "[default: every image].",
            metavar="N",
            show_default=False,
        ),
    ] = None,
    shapes_count: Annotated[
        int, typer.Option(help="Images of the `shapes` data set.")
    ] = defaults.SHAPES_COUNT,
    out: Annotated[
        str, typer.Option(help="Folder that receives the audit's folder.", metavar="PATH")
    ] = defaults.OUT_DIR,
    as_json: AsJson = False,
) -> None:
    """Find exact and near duplicates (across train / validation / test first: leakage), class imbalance, image sizes and modes, blank, tiny and unreadable images; write audit.html and audit.json."""
    from kcnn.runs import folders  # not for `kcnn --help`
    from kcnn.use import audit  # NumPy: not for `kcnn --help`

    settings = {
        "dataset": data,
        "data_dir": data_dir,
        "seed": seed,
        "val_split": val_split,
        "test_split": test_split,
        "shapes_count": shapes_count,
        "limit": limit,
    }
    if audit.is_run_folder(data):
        settings.update(audit.settings_of_run(Path(data)))
    if not data.strip():
        raise KcnnError("DATA is empty; name a data set, an .npz file, an image folder or a run")
    folders.check_out(out)
    record, seen = audit.audit_data(**settings)
    folder = audit.write(out, audit.run_name(settings["dataset"]), record, seen)
    if as_json:
        print_json(audit.plain(record))
        return
    say(*audit.lines(audit.plain(record), folder))
