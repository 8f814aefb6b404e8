"""Train / validation / test splits: stratified, seeded, and optionally limited to a quick subset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcnn.data.files import take
from kcnn.data.validation import Data
from kcnn.errors import KcnnError


@dataclass
class Splits:
    # arrays, or kcnn.data.files.FileImages for an image folder (files, read when a batch needs them)
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]
    # Where each test image came from: its position in the data set's own test split, or, for a
    # data set without one, in its training images (the held-out test set). Two runs with the
    # same data and the same positions were tested on the same images: they pair image by image.
    test_index: np.ndarray | None = None
    test_held_out: bool = False  # the positions are into the training images
    # Where each validation image came from: its position in the data set's training images
    # (a fold's out-of-fold probabilities name each image by it).
    val_index: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _stratified(rows, y, fraction_or_count, seed):
    """Split off a stratified part of `rows` (positions into `y`): (kept, split off), each in the
    order scikit-learn draws. Falls back to a plain shuffle when a class is too rare to stratify.

    Only positions are split, never images: scikit-learn's split of an array is the array taken
    at these very positions (`x[positions]`), so each part is taken once, at the end, instead of
    every split copying the images it passes on (a data set held three times at the peak).
    """
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(
            rows, test_size=fraction_or_count, random_state=seed, stratify=y[rows]
        )
    except ValueError:
        return train_test_split(rows, test_size=fraction_or_count, random_state=seed)


def stratified_subset(rows, y, limit, seed):
    """At most `limit` of `rows` (positions into `y`), stratified by class and drawn from
    `seed`: what `--limit` keeps of a split, and what `kcnn inspect --limit` looks at."""
    if limit >= len(rows):
        return rows
    return _stratified(rows, y, limit, seed)[1]


def fold_rows(rows, y, fold: int, folds: int, seed: int):
    """Fold `fold` (1..folds) of `rows` (positions into `y`) split off as validation: (kept, the
    fold), stratified and drawn from `seed`, so the folds of one seed part the rows exactly. A
    class with fewer images than folds cannot be in every fold: refused, naming it."""
    from sklearn.model_selection import StratifiedKFold

    classes, counts = np.unique(y[rows], return_counts=True)
    if folds > counts.min():
        rare, fewest = classes[np.argmin(counts)], int(counts.min())
        instead = f"use --folds {fewest} or fewer" if fewest >= 2 else "give it more images"
        raise KcnnError(
            f"--folds {folds} is more than the {fewest} training image(s) of class {rare} "
            f"(the smallest class): each fold needs one of every class; {instead}"
        )
    parts = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed).split(rows, y[rows])
    kept, held = list(parts)[fold - 1]
    return rows[kept], rows[held]


def check_split(value: float, option: str) -> None:
    if not 0.0 < value < 1.0:
        raise KcnnError(f"{option} must be between 0 and 1 (exclusive), got {value}")


def make_splits(
    data: Data,
    val_split: float,
    seed: int,
    limit: int | None = None,
    test_split: float = 0.2,
    fold: tuple[int, int] | None = None,
) -> Splits:
    """Hold out a test split if the data has none, limit, then split off validation (all stratified).

    `limit` caps the training pool (before the validation split) and the test set, each at N images.
    `fold` = (I, K): validation is fold I of K of the training pool instead (`--folds`).
    """
    check_split(val_split, "--val-split")
    check_split(test_split, "--test-split")
    num_classes = len(data.class_names)
    for name, labels in (("training", data.y_train), ("test", data.y_test)):
        if labels is not None and len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
            raise KcnnError(
                f"{data.name}: {name} labels range over {labels.min()}..{labels.max()} but there are "
                f"{num_classes} classes; labels must be 0..{num_classes - 1}"
            )
    y = data.y_train
    rows = np.arange(len(y))
    if data.x_test is None:
        rows, test_rows = _stratified(rows, y, test_split, seed)
        x_test_source, y_test_source = data.x_train, y
    else:
        test_rows = None  # all of it, as it is: no copy
        x_test_source, y_test_source = data.x_test, data.y_test
    if limit is not None:
        if limit < 2 * num_classes:
            raise KcnnError(
                f"--limit {limit} is too small: use at least {2 * num_classes} (two images per class)"
            )
        if limit > len(rows):
            raise KcnnError(
                f"--limit {limit} is larger than the {len(rows)} training images of {data.name}; "
                f"use --limit {len(rows)} or less, or drop --limit"
            )
        rows = stratified_subset(rows, y, limit, seed)
        every = np.arange(len(y_test_source)) if test_rows is None else test_rows
        test_rows = stratified_subset(every, y_test_source, limit, seed)
    if fold is not None:
        train_rows, val_rows = fold_rows(rows, y, *fold, seed)
    elif round(len(rows) * val_split) < 1 or round(len(rows) * (1 - val_split)) < 1:
        raise KcnnError(f"--val-split {val_split} leaves an empty split of {len(rows)} images")
    else:
        train_rows, val_rows = _stratified(rows, y, val_split, seed)
    if test_rows is None:
        x_test, y_test = x_test_source, y_test_source
        test_rows = np.arange(len(y_test_source))
    else:
        x_test, y_test = take(x_test_source, test_rows), y_test_source[test_rows]
    return Splits(
        take(data.x_train, train_rows),
        y[train_rows],
        take(data.x_train, val_rows),
        y[val_rows],
        x_test,
        y_test,
        list(data.class_names),
        np.asarray(test_rows, dtype=np.int64),
        data.x_test is None,
        np.asarray(val_rows, dtype=np.int64),
    )
