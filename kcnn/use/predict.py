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

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
PREDICT_BATCH = 64  # images per call of the model when predicting


def load_model(path: Path):
    """model.keras with kcnn's custom layers registered; a damaged file is a KcnnError."""
    from kcnn.models import saved

    return saved.load(path, "the run did not finish saving its model: retrain it")


@dataclass
class LoadedRun:
    info: RunInfo
    model: Any  # the run's Keras model; None when an exported model file stands in for it
    data_shape: tuple[int, int, int]  # the data set's own image shape
    input_shape: tuple[int, int, int]  # the model's input
    prepare: Any  # uint8 (B, *data_shape) -> the float batch the model takes
    _forward: Any = field(default=None, repr=False)  # the model as one compiled call
    _names: list[str] | None = field(default=None, repr=False)
    _splits: list | None = field(default=None, repr=False)  # [Splits or None] once rebuilt

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
        return predict_batches(self._forward, self.prepare, images, batch)

    def splits(self):
        """The run's splits rebuilt from config.json (same data, seed, limit and fractions), or
        None when that data cannot be had here. Built once per LoadedRun."""
        if self._splits is None:
            self._splits = [_rebuild_splits(self.info.settings)]
        parts = self._splits[0]
        if parts is None or parts.x_test.shape[1:] != self.data_shape:
            return None
        return parts

    def test_split(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every test image (uint8, the data set's form) and its label, or None."""
        parts = self.splits()
        return None if parts is None else (parts.x_test, np.asarray(parts.y_test))

    def test_images(self, count: int) -> np.ndarray | None:
        """The first `count` test images of the run's data set, or None when that data cannot be
        had here."""
        found = self.test_split()
        return None if found is None else found[0][:count]

    def train_images(self) -> np.ndarray | None:
        """The run's training images (its training split only: neither validation nor test)."""
        parts = self.splits()
        return None if parts is None else parts.x_train


def predict_batches(forward, prepare, images: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
    """`forward(prepare(chunk))` over `images` a batch at a time, as one float32 array."""
    parts = [
        np.asarray(forward(prepare(images[i : i + batch])), dtype=np.float32)
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def _rebuild_splits(s: dict[str, Any]):
    from kcnn import defaults
    from kcnn.data import datasets, splits

    try:
        data = datasets.load(
            s["dataset"],
            s.get("data_dir"),
            s.get("seed", defaults.SEED),
            s.get("shapes_count", defaults.SHAPES_COUNT),
        )
        return splits.make_splits(
            data,
            s.get("val_split", 0.2),
            s.get("seed"),
            s.get("limit"),
            s.get("test_split", 0.2),
        )
    except (KcnnError, OSError, KeyError, ValueError):
        return None


def _data_shape(info: RunInfo, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The data's own image shape; without a record of it, the model's input with the run's fit
    mode 'none' (which is what a resized run amounts to for an arbitrary-size user image)."""
    return info.data_image_shape or input_shape


def load(run: str | Path, exported: str | Path | None = None) -> LoadedRun:
    """A run ready to predict: its own model.keras, or with `exported` an exported model file
    (`.onnx`, `.tflite`, a SavedModel folder) in its runtime, fed by the run's preprocessing."""
    info = find_run(run)  # before TensorFlow is imported: a wrong name answers at once
    from kcnn.data.pipeline import prepare_batch_fn
    from kcnn.models import backbones

    model, forward = None, None
    if exported is not None:
        from kcnn.use import runtimes

        runtime = runtimes.open_model(exported)
        input_shape = _exported_input_shape(info, runtime, exported)
        forward = runtime.predict
    else:
        model = load_model(info.folder / folders.MODEL)
        input_shape = info.input_shape or tuple(int(v) for v in model.input_shape[1:])
    preprocess = backbones.get(info.backbone).preprocess_input() if info.backbone else None
    data_shape = _data_shape(info, input_shape)
    prepare = prepare_batch_fn(data_shape, input_shape, preprocess)
    loaded = LoadedRun(info, model, data_shape, input_shape, prepare, forward)
    if exported is not None:
        _check_outputs(loaded, exported)
    return loaded


def _exported_input_shape(info: RunInfo, runtime, path) -> tuple[int, int, int]:
    """The run's input shape, which the exported model must take (when the file states one)."""
    shape = info.input_shape or runtime.input_shape
    if shape is None or len(shape) != 3:
        raise KcnnError(f"cannot tell which image size {path} takes: {info.folder} records none")
    if runtime.input_shape is not None and tuple(runtime.input_shape) != tuple(shape):
        got, want = ("×".join(map(str, v)) for v in (runtime.input_shape, shape))
        raise KcnnError(
            f"{path} takes {got} inputs but the run {info.folder.name} takes {want}: "
            "pass the run the model was exported from"
        )
    return tuple(int(v) for v in shape)


def _check_outputs(loaded: LoadedRun, path) -> None:
    """An exported model of another network (other classes) is refused, not mislabelled."""
    probe = np.zeros((1, *loaded.data_shape), dtype=np.uint8)
    out = loaded.predict(probe)
    classes = len(loaded.info.class_names)
    if out.ndim != 2 or (classes and out.shape[1] != classes):
        raise KcnnError(
            f"{path} gives outputs of shape {out.shape[1:]} but the run "
            f"{loaded.info.folder.name} has {classes} classes: pass the run it was exported from"
        )


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
