"""A finished run's model on new images, seen exactly as the run saw its data.

An image file is first brought to the run's data set's own image form (its channels and size,
e.g. 8×8 grey for `digits`), then through the very pipeline function training used
(`prepare_batch_fn`: channel conversion, pad-or-resize to the model's input, scaling or the
backbone's `preprocess_input`). `LoadedRun` is shared by `predict`, `visualize` and `export`.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.browse import RunInfo, find_run
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PREDICT_BATCH = 64  # images per call of the model when predicting


def load_model(path: Path):
    """model.keras with kcnn's custom layers registered; a damaged file is a KcnnError."""
    from kcnn.models import saved

    return saved.load(path, "the run did not finish saving its model: retrain it")


@dataclass
class LoadedRun:
    info: RunInfo
    model: Any
    data_shape: tuple[int, int, int]  # the data set's own image shape
    input_shape: tuple[int, int, int]  # the model's input
    prepare: Any  # uint8 (B, *data_shape) -> the float batch the model takes
    _forward: Any = field(default=None, repr=False)  # the model as one compiled call
    _names: list[str] | None = field(default=None, repr=False)

    def label(self, index: int) -> str:
        """A class's name from config.json ("classes"); its number if the run recorded none."""
        if self._names is None:
            self._names = list(self.info.class_names)
        names = self._names
        return names[index] if index < len(names) else str(index)

    def predict(self, images: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
        """Class probabilities for uint8 images in the data set's form (B, *data_shape), a batch
        at a time through one compiled call: memory stays bounded for a folder of any size."""
        import tensorflow as tf

        if self._forward is None:
            self._forward = tf.function(lambda x: self.model(x, training=False))
        parts = [
            np.asarray(self._forward(self.prepare(images[i : i + batch])))
            for i in range(0, len(images), batch)
        ]
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)

    def test_images(self, count: int) -> np.ndarray | None:
        """The first `count` test images of the run's data set, rebuilt from config.json (same
        seed, limit and splits), or None when that data cannot be had here."""
        from kcnn import defaults
        from kcnn.data import datasets, splits

        s = self.info.settings
        try:
            data = datasets.load(
                s["dataset"],
                s.get("data_dir"),
                s.get("seed", defaults.SEED),
                s.get("shapes_count", defaults.SHAPES_COUNT),
            )
            parts = splits.make_splits(
                data,
                s.get("val_split", defaults.VAL_SPLIT),
                s.get("seed", defaults.SEED),
                s.get("limit"),
                s.get("test_split", defaults.TEST_SPLIT),
            )
        except (KcnnError, OSError, KeyError, ValueError):
            return None
        images = parts.x_test[:count]
        return images if images.shape[1:] == self.data_shape else None


def _data_shape(info: RunInfo, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The data's own image shape; without a record of it, the model's input with the run's fit
    mode 'none' (which is what a resized run amounts to for an arbitrary-size user image)."""
    return info.data_image_shape or input_shape


def load(run: str | Path) -> LoadedRun:
    info = find_run(run)  # before TensorFlow is imported: a wrong name answers at once
    from kcnn.data.pipeline import prepare_batch_fn
    from kcnn.models import backbones

    try:
        model_file = RunFolder(info.folder).model_file()
    except FileNotFoundError:
        model_file = info.folder / folders.MODEL  # load_model says what is missing and what to do
    except Damaged as e:
        raise KcnnError(f"cannot use {e.path}: {e.reason}") from None
    model = load_model(model_file)
    input_shape = info.input_shape or tuple(int(v) for v in model.input_shape[1:])
    preprocess = backbones.get(info.backbone).preprocess_input() if info.backbone else None
    data_shape = _data_shape(info, input_shape)
    prepare = prepare_batch_fn(data_shape, input_shape, preprocess)
    return LoadedRun(info, model, data_shape, input_shape, prepare)


def read_image(path: Path, shape: tuple[int, int, int]) -> np.ndarray:
    """An image file as uint8 (H, W, C) in `shape`: any mode (RGBA, P, L, 16-bit...) and size."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
                # 16-bit and float greys: scale their own range to 0..255
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) * (255.0 / (hi - lo)) if hi > lo else np.zeros_like(a)
                im = Image.fromarray(a.round().astype(np.uint8), "L")
            # RGBA/LA/P: the colours as drawn (alpha dropped), then the data's channel count
            im = im.convert("L" if shape[2] == 1 else "RGB")
            if im.size != (shape[1], shape[0]):
                im = im.resize((shape[1], shape[0]), Image.Resampling.BILINEAR)
            a = np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:
        raise KcnnError(f"cannot read image {path}: {e}") from None
    return a.reshape(shape)


def image_files(paths: list[Path]) -> list[Path]:
    """Files named on the command line, and the image files inside named folders (sorted)."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(path)
    return found


def predict_files(loaded: LoadedRun, paths: list[Path], top: int) -> list[dict[str, Any]]:
    """Top-`top` classes per readable image; unreadable ones get one line on stderr each."""
    if top < 1:
        raise KcnnError(f"--top {top}: give at least 1")
    files = image_files(paths)
    if not files:
        raise KcnnError("no image files given (PNG or JPEG files, or folders holding them)")
    images, readable, problems = [], [], []
    for path in files:
        try:
            images.append(read_image(path, loaded.data_shape))
            readable.append(path)
        except KcnnError as e:
            problems.append(str(e))
    if not images:
        raise KcnnError(
            problems[0]
            if len(problems) == 1
            else f"none of the {len(files)} images could be read ({problems[0]}; ...)"
        )
    for problem in problems:  # the others are still predicted
        print(f"error: {problem}", file=sys.stderr)
    probabilities = loaded.predict(np.stack(images))
    k = min(top, probabilities.shape[-1])
    results = []
    for path, p in zip(readable, probabilities, strict=True):
        best = np.argsort(-p)[:k]
        results.append(
            {
                "image": str(path),
                "top": [{"class": loaded.label(i), "probability": float(p[i])} for i in best],
            }
        )
    return results
