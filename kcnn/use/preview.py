"""`kcnn augment-preview`: a grid of training images as a run's augmentation makes them — each
image beside what the first epochs of training would see of it — because people would rather
look than read a list of switches.

The images are the run's own training split (its data, seed, splits and --limit), one of each
class in turn; each column is one epoch, augmented exactly as the training pipeline augments a
batch (`kcnn.data.augment` and `kcnn.data.keras_augment`, keyed by (seed, epoch, batch)), the
policy's switches first, then Keras's layers, then MixUp or CutMix across the images shown.
Where labels are mixed, each picture's title says which classes it holds and how much of each.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kcnn.engine.config import RunConfig
from kcnn.errors import KcnnError

MAX_IMAGES, MAX_EPOCHS = 64, 16


def pick(y: np.ndarray, count: int) -> np.ndarray:
    """Indices of `count` training images, one of each class in turn, in the split's order."""
    by_class = {c: list(np.flatnonzero(y == c)) for c in np.unique(y)}
    chosen: list[int] = []
    while len(chosen) < min(count, len(y)):
        for c in list(by_class):
            if by_class[c] and len(chosen) < count:
                chosen.append(int(by_class[c].pop(0)))
    return np.asarray(chosen, dtype=np.int64)


def augmented(config: RunConfig, images: np.ndarray, labels: np.ndarray, classes: int, epoch: int):
    """`images` (uint8) as the training pipeline augments them as batch 0 of `epoch` (0-based):
    float pixels 0..255 and their (possibly mixed) label rows."""
    import tensorflow as tf

    from kcnn.data import augment, keras_augment

    settings = augment.resolve(
        config.augment, config.dataset, images.shape[-1], config.augment_switches()
    )
    basic = augment.augmenter(settings, config.seed)
    rows = np.eye(classes, dtype=np.float32)[labels]
    recipe = config.recipe_augmentation()
    if recipe.active:
        function = keras_augment.batch_augmenter(recipe, config.seed, basic)
        x, y = tf.function(function)(tf.constant(images), tf.constant(rows), epoch, 0)
        return np.asarray(x), np.asarray(y)
    if basic is None:
        return images.astype(np.float32), rows
    return np.asarray(tf.function(basic)(tf.constant(images), epoch, 0)), rows


def _title(row: np.ndarray, names: list[str]) -> str:
    from kcnn.runs.plots import label

    held = [(float(row[i]), i) for i in np.argsort(-row) if row[i] > 0.005][:2]
    if len(held) == 1:
        return label(names[held[0][1]])
    return " + ".join(f"{label(names[i])} {w:.2f}" for w, i in held)


def preview(config: RunConfig, out: Path, count: int = 8, epochs: int = 4) -> dict[str, Any]:
    """Draw the grid into `out` (a .png file); returns what it shows."""
    if not 1 <= count <= MAX_IMAGES:
        raise KcnnError(f"--images {count}: give 1 to {MAX_IMAGES}")
    if not 1 <= epochs <= MAX_EPOCHS:
        raise KcnnError(f"--epochs-shown {epochs}: give 1 to {MAX_EPOCHS}")
    out = Path(out).expanduser()
    if out.suffix.lower() != ".png":
        raise KcnnError(f"--out {out}: give a .png file to draw into")
    if not out.parent.is_dir():
        raise KcnnError(f"--out {out}: no folder {out.parent}; make it first")
    if out.is_dir():
        raise KcnnError(f"--out {out} is a folder; give a .png file to draw into")
    from kcnn.data import datasets, splits

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    parts = splits.make_splits(data, config.val_split, config.seed, config.limit, config.test_split)
    chosen = pick(np.asarray(parts.y_train), count)
    images, labels = parts.x_train[chosen], np.asarray(parts.y_train)[chosen]
    names = list(parts.class_names)
    columns = [(images.astype(np.float32), np.eye(len(names), dtype=np.float32)[labels])]
    columns += [augmented(config, images, labels, len(names), e) for e in range(epochs)]
    _draw(columns, names, out, config)
    return {"file": str(out), "images": len(chosen), "epochs": epochs, "dataset": data.name}


def _draw(columns, names: list[str], out: Path, config: RunConfig) -> None:
    from kcnn.runs import plots

    plt = plots.plt
    rows = len(columns[0][0])
    with plots.literal_text():
        fig, axes = plt.subplots(
            rows, len(columns), figsize=(1.6 * len(columns), 1.7 * rows), squeeze=False
        )
        for c, (x, y) in enumerate(columns):
            for r in range(rows):
                ax = axes[r][c]
                image = np.clip(x[r], 0, 255).astype(np.uint8)
                if image.shape[-1] == 1:
                    ax.imshow(image[..., 0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(image)
                ax.set_xticks([])
                ax.set_yticks([])
                top = "original" if c == 0 else f"epoch {c}"
                ax.set_title(
                    f"{top}\n{_title(y[r], names)}" if r == 0 else _title(y[r], names), fontsize=7
                )
        fig.suptitle(
            plots.label(f"{config.dataset}: training augmentation, seed {config.seed}"), fontsize=9
        )
        plots._save(fig, out)
