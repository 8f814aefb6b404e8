"""The README's worked example of `--folds` and `kcnn audit --labels`, measured and recorded.

    python docs/label_issues_demo.py record     # plants the flips, trains, writes the record
    python docs/label_issues_demo.py readme     # the README block, from the record alone

`record` writes digits as an .npz with its own test split (a fifth, drawn at random) and 100 of
its 1,438 training labels changed at random to another class, trains `kcnn train lenet5 --folds 5
--epochs 15` on it, asks `kcnn audit --labels GROUP --top 150 --json`, and keeps in
docs/label-issues-digits.json what the group and the suspects say, with how many of the planted
flips are among the 150 ranked most likely wrong. Every figure in the README block comes from it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

RECORD = Path(__file__).with_name("label-issues-digits.json")
FLIPS, FOLDS, EPOCHS, TOP = 100, 5, 15, 150


def plant(path: Path, flips: int, seed: int = 0) -> list[int]:
    """digits with `flips` training labels changed at random; returns their positions."""
    from kcnn.data import datasets

    data = datasets.load("digits", None, 0, 0)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    rng = np.random.default_rng(seed)
    test = rng.permutation(len(y))[: len(y) // 5]
    train = np.setdiff1d(np.arange(len(y)), test)
    flipped = rng.choice(train.size, flips, replace=False)
    y_train = y[train].copy()
    y_train[flipped] = (y_train[flipped] + rng.integers(1, 10, flips)) % 10
    np.savez(path, x_train=x[train], y_train=y_train, x_test=x[test], y_test=y[test])
    return sorted(int(i) for i in flipped)


def kcnn(*args) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *map(str, args)], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(done.stderr[-2000:])
    return done.stdout


def record() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "digits-planted.npz"
        flipped = plant(data, FLIPS)
        trained = json.loads(
            kcnn("train", "lenet5", "--dataset", data, "--epochs", EPOCHS, "--folds", FOLDS,
                 "--out", Path(tmp) / "runs", "--json")
        )  # fmt: skip
        group = Path(trained["group"])
        found = json.loads(kcnn("audit", "--labels", group, "--top", TOP, "--json"))
        summary = json.loads((group / "group.json").read_text())
    (metrics,) = [g["metrics"] for g in summary["groups"].values()]
    hits = set(flipped) & {s["index"] for s in found["suspects"]}
    RECORD.write_text(
        json.dumps(
            {
                "planted": FLIPS,
                "folds": FOLDS,
                "epochs": EPOCHS,
                "top": TOP,
                "images": found["images"],
                "flagged": found["flagged"],
                "planted_in_top": len(hits),
                "cross_validation": summary["cross_validation"],
                "test": {k: metrics[k] for k in ("test_accuracy", "test_balanced_accuracy")},
                "first": [{**s, "planted": s["index"] in hits} for s in found["suspects"][:5]],
            },
            indent=2,
        )
        + "\n"
    )


def readme() -> str:
    r = json.loads(RECORD.read_text())
    cv, test = r["cross_validation"], r["test"]["test_accuracy"]
    lines = [
        f"{r['planted']} of the {r['images']:,} training labels flipped at random; "
        f"{r['folds']} folds of {r['epochs']} epochs. Out of fold: accuracy {cv['accuracy']:.4f}, "
        f"balanced accuracy {cv['balanced_accuracy']:.4f}, macro-F1 {cv['macro_f1']:.4f}; the "
        f"fold models on the test split: {test['mean']:.4f} ± {test['half_width']:.4f}. "
        f"cleanlab flags {r['flagged']}; {r['planted_in_top']} of the {r['planted']} flips are "
        f"among the {r['top']} ranked most likely wrong.",
        "",
        "| image (position) | given | likely | p(given) | planted |",
        "|---|---:|---:|---:|---|",
        *(
            f"| {s['name']} | {s['given']} | {s['likely']} | {s['score']:.3f} | "
            f"{'yes' if s['planted'] else 'no'} |"
            for s in r["first"]
        ),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    if sys.argv[1:] == ["record"]:
        record()
    print(readme())
