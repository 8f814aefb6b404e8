"""Test-time augmentation: a model's class probabilities averaged over views of each image.

- `flip`: the image and its left-right mirror (2 views);
- `crops`: the image and four crops of the same size shifted towards each corner by a margin of
  1/16 of the side (at least a pixel), the border repeating its edge pixels (5 views) — the
  "centre and four corners" of ten-crop evaluation, at the image's own size, since a kcnn model
  takes one input size.

Views are made of batches already prepared for the model (scaled, padded or resized, channels
last), so the same function serves the test evaluation of a run (`kcnn.engine.evaluation`),
`kcnn predict`, `kcnn inspect` and `kcnn export`'s accuracy check, whatever runs the model (Keras,
ONNX Runtime, TFLite). The probabilities averaged are the model's softmax outputs; a calibration
temperature, where there is one, applies to the average.

A mirrored digit is another digit (and a mirrored slash a backslash): `flip` is refused on the
data sets where that is so (`augment.MIRROR_SENSITIVE`). Pure NumPy: no TensorFlow here.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from kcnn.data.augment import MIRROR_SENSITIVE
from kcnn.errors import KcnnError

MODES = ("flip", "crops")
CROP_MARGIN = 1 / 16


def check(mode: str | None, dataset: str | None, option: str = "--tta") -> str | None:
    """`mode` if it can be used on `dataset`; a one-line refusal otherwise."""
    if mode is None or mode == "none":
        return None
    if mode not in MODES:
        raise KcnnError(f"{option} {mode}: choose one of none, {', '.join(MODES)}")
    if mode == "flip" and dataset in MIRROR_SENSITIVE:
        raise KcnnError(
            f"{option} flip on {dataset}: a mirrored digit or slash is another class; "
            f"use {option} crops"
        )
    return mode


def margin(side: int) -> int:
    return max(1, round(side * CROP_MARGIN))


def views(batch: np.ndarray, mode: str) -> list[np.ndarray]:
    """The views of a prepared batch (B, H, W, C), the batch itself first."""
    batch = np.asarray(batch)
    if mode == "flip":
        return [batch, batch[:, :, ::-1, :]]
    if mode == "crops":
        h, w = batch.shape[1:3]
        mh, mw = margin(h), margin(w)
        padded = np.pad(batch, ((0, 0), (mh, mh), (mw, mw), (0, 0)), mode="edge")
        corners = [
            padded[:, dy : dy + h, dx : dx + w, :] for dy in (0, 2 * mh) for dx in (0, 2 * mw)
        ]
        return [batch, *corners]
    raise ValueError(f"unknown test-time augmentation {mode!r}")


def average(forward: Callable[[np.ndarray], np.ndarray], batch, mode: str | None) -> np.ndarray:
    """`forward`'s probabilities for a prepared batch, averaged over `mode`'s views (float32);
    `forward(batch)` itself when `mode` is None."""
    if mode is None:
        return np.asarray(forward(batch), dtype=np.float32)
    outputs = [
        np.asarray(forward(np.ascontiguousarray(v)), dtype=np.float64) for v in views(batch, mode)
    ]
    return np.mean(outputs, axis=0).astype(np.float32)
