"""Train / validation / test splits: stratified, seeded, and optionally limited to a quick subset."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from kcnn.data.validation import Data
from kcnn.errors import KcnnError


@dataclass
class Splits:
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _stratified(x, y, fraction_or_count, seed):
    """Split off a stratified part; falls back to a plain shuffle when a class is too rare to stratify."""
    from sklearn.model_selection import train_test_split

    try:
        return train_test_split(x, y, test_size=fraction_or_count, random_state=seed, stratify=y)
    except ValueError:
        return train_test_split(x, y, test_size=fraction_or_count, random_state=seed)


def _subset(x, y, limit, seed):
    if limit >= len(y):
        return x, y
    _, x_small, _, y_small = _stratified(x, y, limit, seed)
    return x_small, y_small


def check_split(value: float, option: str) -> None:
    if not 0.0 < value < 1.0:
        raise KcnnError(f"{option} must be between 0 and 1 (exclusive), got {value}")


def make_splits(
    data: Data, val_split: float, seed: int, limit: int | None = None, test_split: float = 0.2
) -> Splits:
    """Hold out a test split if the data has none, limit, then split off validation (all stratified).

    `limit` caps the training pool (before the validation split) and the test set, each at N images.
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
    x, y = data.x_train, data.y_train
    if data.x_test is None:
        x, x_test, y, y_test = _stratified(x, y, test_split, seed)
    else:
        x_test, y_test = data.x_test, data.y_test
    if limit is not None:
        if limit < 2 * num_classes:
            raise KcnnError(
                f"--limit {limit} is too small: use at least {2 * num_classes} (two images per class)"
            )
        if limit > len(y):
            raise KcnnError(
                f"--limit {limit} is larger than the {len(y)} training images of {data.name}; "
                f"use --limit {len(y)} or less, or drop --limit"
            )
        x, y = _subset(x, y, limit, seed)
        x_test, y_test = _subset(x_test, y_test, limit, seed)
    if round(len(y) * val_split) < 1 or round(len(y) * (1 - val_split)) < 1:
        raise KcnnError(f"--val-split {val_split} leaves an empty split of {len(y)} images")
    x_train, x_val, y_train, y_val = _stratified(x, y, val_split, seed)
    return Splits(x_train, y_train, x_val, y_val, x_test, y_test, list(data.class_names))
