"""A folds group's out-of-fold answers (`kcnn train --folds K`): every training image answered
by the one fold model that did not train on it, gathered into `oof_probabilities.npz`.

Each fold's run records its answers on the fold it held out (`fold_predictions.npz`, the form of
the per-image test results, `kcnn.runs.predictions`: positions into the data set's training
images, given labels, probabilities, and for an image folder each image's file). The folds part
the training pool exactly, so together they answer every image of it once. The group's file has
the same form and is read through its folder's owner (`RunFolder.out_of_fold`) as untrusted;
what it scores (accuracy, balanced accuracy, macro-F1) goes into group.json's
`cross_validation` — the estimate on the training pool, beside the fold models' test accuracy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.predictions import ImageResults
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder


def gather(group: Path, runs: Sequence[Path | None]) -> dict[str, Any]:
    """Join the folds' answers of `runs` (each fold's run folder) into the group's
    oof_probabilities.npz, ordered by image position; returns what they score."""
    from kcnn.engine.evaluation import class_balanced

    parts = [_fold_answers(run) for run in runs]
    index = np.concatenate([p.index for p in parts])
    if np.unique(index).size != index.size:
        raise KcnnError(f"the folds of {group} overlap: an image is in two of them; train again")
    order = np.argsort(index, kind="stable")
    files = None
    if all(p.files is not None for p in parts):
        files = [f for p in parts for f in p.files]
        files = [files[i] for i in order]
    true = np.concatenate([p.true for p in parts])[order]
    probabilities = np.concatenate([p.probabilities for p in parts]).astype(np.float32)[order]
    joined = ImageResults.build(index[order], true, probabilities, files)
    RunFolder(group).write_text(folders.OUT_OF_FOLD, joined.to_bytes())
    classes = probabilities.shape[1]
    return {
        "folds": len(parts),
        "images": int(index.size),
        "accuracy": float(np.mean(joined.correct)),
        **class_balanced(true, joined.predicted, classes),
    }


def _fold_answers(run: Path | None) -> ImageResults:
    """One fold run's answers on its held-out fold, checked; a fold without them is refused."""
    try:
        if run is None:
            raise FileNotFoundError
        found = RunFolder(run).test_predictions(folders.FOLD_PREDICTIONS)
    except (FileNotFoundError, Damaged) as e:
        why = str(e) if isinstance(e, Damaged) else "none recorded"
        raise KcnnError(
            f"a fold run of the group has no usable answers on its fold ({why}); "
            "run the same command with --resume to train it again"
        ) from None
    if found.probabilities is None:
        raise KcnnError(f"{run} recorded no probabilities on its fold; train it again")
    return found
