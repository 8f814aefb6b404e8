"""`kcnn label-issues GROUP`: the training images of a folds group whose label is likely wrong."""

from __future__ import annotations

from typing import Annotated

import typer

from kcnn.cli.app import AsJson, app, print_json, say


@app.command("label-issues")
def label_issues(
    group: Annotated[
        str, typer.Argument(help="A folds group folder (kcnn train --folds K), or its name.")
    ],
    top: Annotated[
        int | None,
        typer.Option("--top", min=1, max=10_000_000, help="Show the N most likely at most."),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Likely label errors: cleanlab's confident learning on the group's out-of-fold
    probabilities, most likely wrong first (lowest probability of the given label)."""
    from kcnn.use import label_issues as issues  # NumPy, cleanlab: not for `kcnn --help`

    found = issues.label_issues(group, top)
    if as_json:
        print_json(found.to_dict())
        return
    say(*issues.lines(found))
