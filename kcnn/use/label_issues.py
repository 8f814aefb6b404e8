"""Likely label errors of a data set, from a folds group's out-of-fold probabilities.

    from kcnn.use.label_issues import label_issues
    found = label_issues("runs/20250101-120000-lenet5-digits-sequential-folds")
    found.suspects[0].name, found.suspects[0].given, found.suspects[0].likely

`kcnn train --folds K` answers every training image with the one fold model that did not train
on it (`oof_probabilities.npz`, `kcnn.runs.out_of_fold`). cleanlab's confident learning
(`cleanlab.filter.find_label_issues`) reads those answers against the given labels and flags the
images whose label is likely wrong, ranked by self-confidence: the probability the model gives
the given label, lowest (most likely wrong) first. Each suspect is named as the user knows the
image: its file in an image folder, else its position among the data set's training images.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError


@dataclass(frozen=True)
class Suspect:
    name: str  # the image's file, relative to its folder, or its position in the training images
    index: int  # its position in the data set's training images
    given: str  # the label it has
    likely: str  # the class the out-of-fold model gives it most probability
    score: float  # self-confidence: the probability of the given label (low: likely wrong)


@dataclass
class LabelIssues:
    group: Path
    images: int  # training images answered out of fold
    flagged: int  # how many cleanlab flags, before `top`
    suspects: list[Suspect]

    def to_dict(self) -> dict[str, Any]:
        return {
            "group": str(self.group),
            "images": self.images,
            "flagged": self.flagged,
            "suspects": [asdict(s) for s in self.suspects],
        }


def out_of_fold(group: str | Path):
    """The group's out-of-fold answers and class names, read as untrusted through its folder's
    owner; a run or group without them is refused, saying how to make them."""
    from kcnn.runs.browse import find
    from kcnn.runs.records import Damaged
    from kcnn.runs.run import RunFolder

    info = find(group)
    folder = RunFolder(info.folder)
    try:
        results = folder.out_of_fold()
    except FileNotFoundError:
        raise KcnnError(
            f"{group} holds no out-of-fold probabilities: train with --folds K "
            "(e.g. kcnn train lenet5 --dataset digits --folds 5) and name its group folder"
        ) from None
    except Damaged as e:
        raise KcnnError(f"{e}: its out-of-fold probabilities cannot be used; train again") from None
    return info.folder, results, _class_names(info, results.probabilities.shape[1])


def _class_names(info, classes: int) -> list[str]:
    """The classes as the group's runs name them, else their numbers."""
    for run in info.sub_runs:
        names = (run.config or {}).get("classes")
        if isinstance(names, list) and len(names) == classes:
            return [str(n) for n in names]
    return [str(c) for c in range(classes)]


def label_issues(group: str | Path, top: int | None = None) -> LabelIssues:
    """The images of a folds group's training data whose given label is likely wrong, most
    likely first (at most `top` of them)."""
    import numpy as np
    from cleanlab.filter import find_label_issues

    folder, results, names = out_of_fold(group)
    probabilities = results.probabilities.astype(np.float64)
    probabilities /= np.maximum(probabilities.sum(axis=1, keepdims=True), 1e-12)  # float16 kept
    labels = results.true.astype(np.int64)
    if np.unique(labels).size < 2:
        raise KcnnError(f"{group}: its out-of-fold labels are all one class; nothing to compare")
    ranked = find_label_issues(
        labels, probabilities, return_indices_ranked_by="self_confidence", n_jobs=1
    )
    chosen = ranked if top is None else ranked[:top]
    likely = probabilities.argmax(axis=1)
    suspects = [_suspect(int(i), results, probabilities, int(likely[i]), names) for i in chosen]
    return LabelIssues(folder, results.n, len(ranked), suspects)


def _suspect(i: int, results, probabilities, likely: int, names: list[str]) -> Suspect:
    given = int(results.true[i])
    position = int(results.index[i])
    return Suspect(
        name=results.files[i] if results.files is not None else str(position),
        index=position,
        given=names[given],
        likely=names[likely],
        score=float(probabilities[i, given]),
    )


def lines(found: LabelIssues) -> list[str]:
    """What a person reads: how many were flagged, then one suspect a line."""
    head = (
        f"{found.flagged} of {found.images} training images likely mislabelled "
        f"(cleanlab, from the out-of-fold probabilities of {found.group.name})"
    )
    if not found.suspects:
        return [head]
    width = max(len(s.name) for s in found.suspects)
    rows = [
        f"  {s.name:<{width}}  given {s.given}, likely {s.likely}  (p(given) {s.score:.3f})"
        for s in found.suspects
    ]
    shown = "" if len(rows) == found.flagged else f"; the {len(rows)} most likely shown"
    return [head + shown, *rows]
