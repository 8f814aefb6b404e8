"""What a run's training images look like, and how far a new image is from them.

A model answers for any picture, even one nothing like its training data (a black-on-white digit
for an MNIST model, a photo for a digit model), and its probabilities do not say so. At training
time a run records a small summary of its training images: per-pixel mean and spread on a grid
of at most GRID × GRID (area averages of the data set's own image form), and the distance score
that PERCENTILE % of the training images stay under when each is scored against the others (see
`summarise`). `kcnn predict` scores each new image the same way and warns when it is further out.

The score is the root-mean-square of the per-pixel z-scores, the spread floored at STD_FLOOR so
that a pixel the training images never vary (MNIST's black border) does not make one stray dot
an outlier. Too few training images (under MIN_IMAGES) say too little of what is typical:
nothing is recorded then, and nothing is checked. NumPy only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

GRID = 32  # the most rows and columns the summary keeps (a 224×224 photo is averaged to 32×32)
STD_FLOOR = 0.03  # on the 0..1 pixel scale: about 8 grey levels
PERCENTILE = 99.9
FOLDS = 5  # the threshold is set on each fifth of the images against the other four
MIN_IMAGES = 100
CHUNK = 2048  # images converted to float at a time: memory stays small for any data set
# An image folder is summarised from at most this many of its training images, evenly spaced,
# read in one streaming pass (4,096 grid rows of 32×32×3 cells are 25 MB as float16).
SAMPLE = 4096
VERSION = 1


def _cells(n: int, m: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `m` equal bins over `n` pixels starts, and how many pixels it holds."""
    starts = (np.arange(m) * n) // m
    return starts, np.diff(np.append(starts, n))


def grid_shape(image_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    height, width, channels = image_shape
    return min(height, GRID), min(width, GRID), channels


def shrink(images: np.ndarray) -> np.ndarray:
    """uint8 images (N, H, W, C) as float rows (N, h·w·C) on the 0..1 scale, each cell of the
    grid the mean of the pixels it covers."""
    n, height, width, _ = images.shape
    h, w, _ = grid_shape(images.shape[1:])
    x = images.astype(np.float32) / 255.0
    if h != height:
        starts, counts = _cells(height, h)
        x = np.add.reduceat(x, starts, axis=1) / counts[None, :, None, None]
    if w != width:
        starts, counts = _cells(width, w)
        x = np.add.reduceat(x, starts, axis=2) / counts[None, None, :, None]
    return x.reshape(n, -1)


@dataclass
class Typical:
    """The summary of a run's training images; `scores` and `far` judge new ones."""

    image_shape: tuple[int, int, int]  # the data set's own image form, which it summarises
    mean: np.ndarray  # per cell of the grid, 0..1
    std: np.ndarray  # per cell of the grid, 0..1 (before the floor)
    threshold: float  # the score PERCENTILE % of the training images stay under
    images: int  # how many training images it summarises

    def scores(self, images: np.ndarray) -> np.ndarray:
        """Each image's distance from the training images (uint8, the data set's form)."""
        spread = np.maximum(self.std, STD_FLOOR)
        found = [
            np.sqrt(
                np.mean(np.square((shrink(images[i : i + CHUNK]) - self.mean) / spread), axis=1)
            )
            for i in range(0, len(images), CHUNK)
        ]
        return np.concatenate(found) if found else np.zeros(0, dtype=np.float32)

    def far(self, images: np.ndarray) -> np.ndarray:
        return self.scores(images) > self.threshold

    def record(self) -> dict[str, Any]:
        """The JSON record a run folder keeps (kcnn.runs.run reads it back, checked)."""
        return {
            "version": VERSION,
            "image_shape": list(self.image_shape),
            "grid_shape": list(grid_shape(self.image_shape)),
            "mean": [round(float(v), 5) for v in self.mean],
            "std": [round(float(v), 5) for v in self.std],
            "std_floor": STD_FLOOR,
            "percentile": PERCENTILE,
            "threshold": float(self.threshold),
            "images": self.images,
        }

    @classmethod
    def from_record(cls, record: dict[str, Any]) -> Typical:
        """A recorded summary, refused (ValueError, saying what is wrong) unless every part is
        what `record` writes: a run folder may come from anyone."""
        if record.get("version") != VERSION:
            raise ValueError(f"version {str(record.get('version'))[:20]}, not {VERSION}")
        shape = _shape(record.get("image_shape"))
        if record.get("grid_shape") != list(grid_shape(shape)):
            raise ValueError("its grid does not match its image shape")
        cells = math.prod(grid_shape(shape))
        mean, std = _unit_values(record.get("mean"), cells), _unit_values(record.get("std"), cells)
        threshold, images = record.get("threshold"), record.get("images")
        if not _number(threshold) or not 0 < threshold < 1e6:
            raise ValueError("its threshold is not a positive number")
        if isinstance(images, bool) or not isinstance(images, int) or images < MIN_IMAGES:
            raise ValueError(f"its image count is not a whole number ≥ {MIN_IMAGES}")
        return cls(shape, mean, std, float(threshold), images)


def _number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)


def _shape(v: Any) -> tuple[int, int, int]:
    if (
        not isinstance(v, list)
        or len(v) != 3
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in v)
        or v[2] > 4
        or max(v[:2]) > 65536
    ):
        raise ValueError("its image shape is not [height, width, channels]")
    return tuple(v)


def _unit_values(v: Any, cells: int) -> np.ndarray:
    if not isinstance(v, list) or len(v) != cells or not all(_number(x) and 0 <= x <= 1 for x in v):
        raise ValueError(f"its mean or spread is not {cells} numbers from 0 to 1")
    return np.asarray(v, dtype=np.float32)


def _moments(sums: np.ndarray, squares: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean and spread from sums of values and of their squares over `count` images."""
    mean = sums / count
    return mean, np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))


def summarise(images: np.ndarray) -> Typical | None:
    """The summary of training images (uint8, N × H × W × C); None when there are too few to say
    what is typical.

    The threshold is set on images the mean and spread were not taken from: each of FOLDS parts
    is scored against the summary of the others. Scored against its own summary, a small set
    looks tighter than new images from the same source turn out (a pixel inked in few of its
    images has a spread too small for the next one), and ordinary test images would be flagged.
    """
    if len(images) < MIN_IMAGES or images.ndim != 4:
        return None
    return _summary(len(images), images.shape[1:], lambda key: shrink(images[key]))


def summarise_rows(rows: np.ndarray, image_shape: tuple[int, int, int]) -> Typical | None:
    """The same summary from images already shrunk to grid rows (`shrink`), such as the sample an
    image folder is read for in one streaming pass (`FileImages.shrunk`)."""
    if len(rows) < MIN_IMAGES or rows.ndim != 2:
        return None
    return _summary(len(rows), image_shape, lambda key: rows[key].astype(np.float32))


def _summary(count: int, image_shape, rows_at) -> Typical:
    """`summarise`'s work, over `count` images whose grid rows `rows_at(slice or indices)` gives."""
    fold = np.arange(count) % FOLDS
    cells = math.prod(grid_shape(image_shape))
    sums, squares = np.zeros((FOLDS, cells)), np.zeros((FOLDS, cells))
    for i in range(0, count, CHUNK):
        rows, part = rows_at(slice(i, i + CHUNK)).astype(np.float64), fold[i : i + CHUNK]
        np.add.at(sums, part, rows)
        np.add.at(squares, part, np.square(rows))
    counts = np.bincount(fold, minlength=FOLDS)
    mean, std = _moments(sums.sum(axis=0), squares.sum(axis=0), count)
    # the summary of every part but one, for each part
    others = [
        _moments(sums.sum(axis=0) - sums[k], squares.sum(axis=0) - squares[k], count - counts[k])
        for k in range(FOLDS)
    ]
    held_out = np.empty(count)
    for k, (m, s) in enumerate(others):
        spread = np.maximum(s, STD_FLOOR)
        for i in np.array_split(np.flatnonzero(fold == k), max(1, counts[k] // CHUNK)):
            held_out[i] = np.sqrt(np.mean(np.square((rows_at(i) - m) / spread), axis=1))
    # (a floor: training images all alike would leave no room at all)
    threshold = max(float(np.percentile(held_out, PERCENTILE)), 1e-3)
    return Typical(
        tuple(int(d) for d in image_shape),
        np.clip(np.round(mean, 5), 0.0, 1.0).astype(np.float32),  # rounded as recorded
        np.clip(np.round(std, 5), 0.0, 1.0).astype(np.float32),
        threshold,
        count,
    )
