"""The `shapes` data set: the O / X / diagonal drawings that seed 000 uses to explain convolution.

Six classes of colour drawings on a noisy background, each at a random position, size and colour.
The same seed always draws the same images, so runs on `shapes` are reproducible anywhere.
"""

from __future__ import annotations

import numpy as np

CLASSES = ["circle", "cross", "slash", "backslash", "square", "triangle"]


def _mask(kind: str, dy: np.ndarray, dx: np.ndarray, r: float, t: float) -> np.ndarray:
    """Pixels of one outline shape centred at the origin, radius r, stroke half-width t."""
    inside_box = (np.abs(dx) <= r) & (np.abs(dy) <= r)
    if kind == "circle":
        return np.abs(np.hypot(dx, dy) - r) <= t
    if kind == "cross":
        return inside_box & ((np.abs(dx - dy) <= t * 1.4) | (np.abs(dx + dy) <= t * 1.4))
    if kind == "slash":  # image rows grow downwards, so "/" is where dx == -dy
        return inside_box & (np.abs(dx + dy) <= t * 1.4)
    if kind == "backslash":
        return inside_box & (np.abs(dx - dy) <= t * 1.4)
    if kind == "square":
        edge = np.maximum(np.abs(dx), np.abs(dy))
        return (edge <= r) & (edge >= r - 2 * t)
    if kind == "triangle":
        # apex up; inside when below both slanted edges and above the base
        def inside(s: float) -> np.ndarray:
            return (dy <= s) & (2 * np.abs(dx) <= dy + s)

        return inside(r) & ~inside(r - 2.5 * t)
    raise ValueError(f"unknown shape {kind!r}")


def make_shapes(count: int, seed: int, size: int = 32) -> tuple[np.ndarray, np.ndarray]:
    """Draw `count` images (size × size × 3, uint8) with balanced labels, deterministically."""
    if count < len(CLASSES):
        raise ValueError(f"shapes needs at least {len(CLASSES)} images, got {count}")
    if size < 12:
        raise ValueError(f"shapes images must be at least 12 pixels wide, got {size}")
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(count) % len(CLASSES))
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    images = np.empty((count, size, size, 3), dtype=np.uint8)
    for i, label in enumerate(labels):
        background = rng.uniform(0, 80, size=3)
        noise = rng.normal(0, rng.uniform(4, 20), size=(size, size, 3))
        img = background + noise
        r = rng.uniform(0.18, 0.38) * size
        t = rng.uniform(0.035, 0.07) * size
        cy, cx = rng.uniform(r + 1, size - r - 1, size=2)
        mask = _mask(CLASSES[label], yy - cy, xx - cx, r, t)
        img[mask] = rng.uniform(140, 255, size=3) + rng.normal(0, 8, size=(int(mask.sum()), 3))
        images[i] = np.clip(img, 0, 255).astype(np.uint8)
    return images, labels.astype(np.int64)
