"""How far an image is from a run's training images as the model itself sees them: the distance
to the nearest training image in the model's feature space (the input of its last Dense layer).

Pixels say little about what a model finds familiar: a photo of a person among `shapes` has
pixels within the spread of the shapes' (kcnn.data.typical lets it pass), yet the network's
features place it far from every shape (tests/test_nearest.py). This is the deep nearest-
neighbour check of Sun, Ming, Zhu & Li, "Out-of-Distribution Detection with Deep Nearest
Neighbors" (ICML 2022): features scaled to unit length, the score of an image its Euclidean
distance to the K-th nearest training image's features, and the threshold the distance that
PERCENTILE % of images the model never trained on stay under (the validation split's). K is 1:
the paper's k grows with the share of the training set kept, and a run keeps at most SAMPLE of
its training images (evenly spaced), a few percent of a large set.

`kcnn predict` warns when either this check or the pixel check finds an image far out. NumPy only;
the features come from the trainer (kcnn.engine.familiar) and are kept in
`training_features.npz` (kcnn.runs.run reads it back as untrusted).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

K = 1
PERCENTILE = 99.0
SAMPLE = 1000  # training images whose features are kept (float16: 1000 × 1280 is 2.4 MB)
HELD_OUT = 500  # validation images the threshold is set on, at most (5 lie past its percentile)
MIN_HELD_OUT = 50  # fewer say too little of where unseen images fall: nothing is recorded
FEATURES_MAX = 16384  # the widest feature vector kept
CHUNK = 1024  # images scored at a time: memory stays small for a folder of any size
VERSION = 1


def unit(features: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1 (float32); a row of zeros stays zeros."""
    f = np.asarray(features, dtype=np.float32).reshape(len(features), -1)
    norms = np.linalg.norm(f, axis=1, keepdims=True)
    return f / np.maximum(norms, np.float32(1e-12))


@dataclass(frozen=True)
class Nearest:
    """The kept training features (unit length, float16) and the distance threshold."""

    features: np.ndarray
    threshold: float

    @property
    def width(self) -> int:
        return int(self.features.shape[1])

    def scores(self, features: np.ndarray) -> np.ndarray:
        """Each row's distance to its K-th nearest kept training feature."""
        kept = self.features.astype(np.float64)  # as kept: float16, length 1 to rounding
        kept_squares = (kept**2).sum(axis=1)
        queries = unit(features).astype(np.float64)
        out = np.empty(len(queries), dtype=np.float64)
        for start in range(0, len(queries), CHUNK):
            q = queries[start : start + CHUNK]
            squares = (q**2).sum(axis=1)[:, None] + kept_squares[None, :] - 2.0 * (q @ kept.T)
            distances = np.sqrt(np.maximum(squares, 0.0))
            out[start : start + CHUNK] = np.partition(distances, K - 1, axis=1)[:, K - 1]
        return out

    def far(self, features: np.ndarray) -> np.ndarray:
        return self.scores(features) > self.threshold

    def arrays(self) -> dict[str, np.ndarray]:
        """The record's arrays (`training_features.npz`)."""
        return {
            "features": self.features,
            "threshold": np.asarray(self.threshold, dtype=np.float64),
            "k": np.asarray(K, dtype=np.int64),
            "percentile": np.asarray(PERCENTILE, dtype=np.float64),
            "version": np.asarray(VERSION, dtype=np.int64),
        }

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> Nearest:
        """The record back, every value checked (ValueError naming what is wrong)."""
        version, k = int(arrays["version"]), int(arrays["k"])
        if version != VERSION or k != K:
            raise ValueError(f"it is of version {version} with k {k}; this kcnn writes {VERSION}")
        features = arrays["features"]
        count, width = features.shape
        if not 1 <= count <= SAMPLE or not 1 <= width <= FEATURES_MAX:
            raise ValueError(f"it keeps {count} features of width {width}")
        values = features.astype(np.float32)
        if (
            not np.all(np.isfinite(values))
            or np.abs(np.linalg.norm(values, axis=1) - 1).max() > 0.01
        ):
            raise ValueError("its features are not vectors of length 1")
        threshold = float(arrays["threshold"])
        if not 0.0 <= threshold <= 2.0:  # distances between unit vectors lie in 0..2
            raise ValueError(f"its threshold {threshold!r} is not a distance from 0 to 2")
        return cls(features.astype(np.float16), threshold)


def fit(training: np.ndarray, held_out: np.ndarray) -> Nearest | None:
    """The check from features of training images and of images the model never trained on;
    None when there are too few of either to say (MIN_HELD_OUT)."""
    if len(training) < K or len(held_out) < MIN_HELD_OUT:
        return None
    kept = unit(training)
    directed = np.linalg.norm(kept, axis=1) > 0.5  # a row of zeros has no direction
    kept = kept[directed].astype(np.float16)
    if not len(kept):
        return None
    scores = Nearest(kept, 0.0).scores(held_out)
    return Nearest(kept, float(np.percentile(scores, PERCENTILE)))
