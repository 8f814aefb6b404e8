"""`kcnn diff A B`: what differs between two runs or groups, and whether it matters."""

from __future__ import annotations

from typing import Annotated

import typer

from kcnn.cli.app import AsJson, app, print_json, say
from kcnn.text import terminal

CELL = 40  # characters of a value shown on the terminal (--json has them whole)


def _cell(value, key: str) -> str:
    from kcnn.runs import readable

    shown = terminal(readable.value(value, key.rsplit(".", 1)[-1]))
    return shown if len(shown) <= CELL else shown[: CELL - 1] + "…"


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="A run folder or group folder (or its name).")],
    b: Annotated[str, typer.Argument(help="Another, to compare with A.")],
    as_json: AsJson = False,
) -> None:
    """Why two runs (or groups of seed runs) differ: every setting, data, package, kernel and
    device difference, most able to move the numbers first; the difference against the noise;
    and whether the two were built to be identical, and are."""
    from kcnn.runs import diff as differ

    found = differ.diff(a, b)
    if as_json:
        print_json(found)
        return
    sides = found["a"], found["b"]
    for letter, s in zip("AB", sides, strict=True):
        say(f"{letter}: {s['folder']}  ({s['kind']})")
    rows = found["differences"]
    if rows:
        say("", "what differs, most able to move the numbers first:")
        cells = [["kind", "what", "A", "B"]] + [
            [
                differ.CATEGORY_TEXT[d["category"]],
                terminal(d["key"]),
                _cell(d["a"], d["key"]),
                _cell(d["b"], d["key"]),
            ]
            for d in rows
        ]
        widths = [max(len(row[i]) for row in cells) for i in range(4)]
        for row in cells:  # every cell escaped already
            typer.echo(
                "  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip()
            )
    else:
        say("", "nothing differs in their records")
    say("", "against the noise:")
    for line in found["noise"]["sentences"]:
        say(f"  - {line}")
    say("", f"identical: {found['identical']['sentence']}")
