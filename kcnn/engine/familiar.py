"""The end of a run's training: what `kcnn predict` will compare a new image against in the
model's own feature space (kcnn.data.nearest): the features of up to SAMPLE training images,
evenly spaced, and the distance threshold set on up to HELD_OUT validation images. A run with no
validation split, or a model with no Dense layer kcnn can reach, records none; predict then checks
pixels alone (kcnn.data.typical).
"""

from __future__ import annotations

import numpy as np

from kcnn.data import nearest
from kcnn.data.files import evenly, take


def sample(x, y: np.ndarray, most: int):
    """Up to `most` rows of a split (in memory or on disk), evenly spaced, and their labels."""
    rows = evenly(len(y), most)
    return take(x, rows), np.asarray(y)[rows]


def features(extract, batches) -> np.ndarray:
    """The features of every image `batches` gives ((images, labels) or (images, labels,
    weights)); an image of weight 0 (a file that failed to decode) is left out."""
    found = []
    for batch in batches:
        values = np.asarray(extract(batch[0]), dtype=np.float32)
        if len(batch) > 2:
            values = values[np.asarray(batch[2]) > 0]
        found.append(values)
    return np.concatenate(found) if found else np.zeros((0, 0), dtype=np.float32)


def check(model, training_batches, held_out_batches) -> nearest.Nearest | None:
    """The nearest-neighbour check of `model` (None: no features to take, or too few images)."""
    from kcnn.models.penultimate import extractor

    extract = extractor(model)
    if extract is None:
        return None
    held_out = features(extract, held_out_batches)
    if len(held_out) < nearest.MIN_HELD_OUT:
        return None
    return nearest.fit(features(extract, training_batches), held_out)
