"""`kcnn audit DATA`: know the data before training on it (kcnn.use.audit does the work); and
`kcnn audit --labels GROUP`: the training images of a folds group whose label is likely wrong
(kcnn.use.label_issues)."""

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
        str | None,
        typer.Argument(
            help="A data set kcnn trains on (a registered name, an .npz file, an image folder), "
            "or a run folder (its data, split as it was).",
            metavar="[DATA]",
            show_default=False,
        ),
    ] = None,
    labels: Annotated[
        str | None,
        typer.Option(
            "--labels",
            help="Instead of DATA: a folds group (kcnn train --folds K); list its training images "
            "whose label is likely wrong (cleanlab's confident learning on the out-of-fold "
            "probabilities, most likely wrong first).",
            metavar="GROUP",
            show_default=False,
        ),
    ] = None,
    top: Annotated[
        int | None,
        typer.Option(
            "--top", min=1, max=10_000_000, help="With --labels: show the N most likely at most."
        ),
    ] = None,
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
    """Find exact and near duplicates (across train / validation / test first: leakage), class imbalance, image sizes and modes, blank, tiny and unreadable images; write audit.html and audit.json. With --labels GROUP: likely label errors."""
    if (data is None) == (labels is None):
        raise KcnnError(
            "name one thing to audit: DATA (a data set or a run) or --labels GROUP (a folds group)"
        )
    if labels is not None:
        return _label_issues(labels, top, as_json)
    if top is not None:
        raise KcnnError("--top counts likely label errors: use it with --labels GROUP")
    _audit_data(data, data_dir, seed, val_split, test_split, limit, shapes_count, out, as_json)


def _label_issues(group: str, top: int | None, as_json: bool) -> None:
    from kcnn.use import label_issues as issues  # NumPy, cleanlab: not for `kcnn --help`

    found = issues.label_issues(group, top)
    if as_json:
        print_json(found.to_dict())
        return
    say(*issues.lines(found))


def _audit_data(data, data_dir, seed, val_split, test_split, limit, shapes_count, out, as_json):
    """Audit DATA split as training would split it (a run folder: as that run did)."""
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
