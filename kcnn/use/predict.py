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
    model: Any
    data_shape: tuple[int, int, int]  # the data set's own image shape
    input_shape: tuple[int, int, int]  # the model's input
    prepare: Any  # uint8 (B, *data_shape) -> the float batch the model takes
    _forward: Any = field(default=None, repr=False)  # the model as one compiled call
    _names: list[str] | None = field(default=None, repr=False)
    _parts: Any = field(default=None, repr=False)  # the run's splits, rebuilt once (labelled)

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
                s.get("val_split", 0.2),
                s.get("seed"),
                s.get("limit"),
                s.get("test_split", 0.2),
            )
        except (KcnnError, OSError, KeyError, ValueError):
            return None
        images = parts.x_test[:count]
        return images if images.shape[1:] == self.data_shape else None

    def labelled(self, split: str = "test", limit: int | None = None) -> Labelled:
        """Every image of the run's test (or validation) split with its label, rebuilt from
        config.json as training split it, and for an image-folder data set each image's file.
        `limit`: a stratified subset of at most that many, drawn from the run's seed, in the
        split's order. The data must be the very data the run trained on (its fingerprint)."""
        if split not in ("test", "val"):
            raise ValueError(f"split {split!r}: test or val")
        if self._parts is None:
            self._parts = _rebuild(self.info.settings)
        parts, files = self._parts
        x, y = (parts.x_test, parts.y_test) if split == "test" else (parts.x_val, parts.y_val)
        paths = files.get(split)
        if x.shape[1:] != self.data_shape:
            raise KcnnError(
                f"the run's data set gives {'×'.join(map(str, x.shape[1:]))} images now, but the "
                f"run was trained on {'×'.join(map(str, self.data_shape))}"
            )
        if limit is not None and limit < len(y):
            from kcnn.data.splits import _subset

            seed = self.info.settings.get("seed", 0)
            chosen, _ = _subset(np.arange(len(y)), y, limit, seed)
            chosen = np.sort(chosen)
            x, y = x[chosen], y[chosen]
            paths = [paths[i] for i in chosen] if paths is not None else None
        return Labelled(x, y, paths)


@dataclass
class Labelled:
    """Images of one split of a run's data, their labels, and their files (image folders only:
    None for registered data sets and .npz files, whose images have no file of their own)."""

    images: np.ndarray  # uint8 (N, *data_shape)
    labels: np.ndarray  # int64 (N,)
    paths: list[str] | None

    def __len__(self) -> int:
        return len(self.labels)


def _rebuild(settings: dict[str, Any]):
    """(the run's splits, {split: file paths}) from config.json's settings, exactly as the trainer
    made them; refused when the data cannot be loaded here or is not the data the run saw."""
    import dataclasses

    from kcnn import defaults
    from kcnn.data import datasets, splits
    from kcnn.data.prepared import data_fingerprint

    s = settings
    name = s.get("dataset")
    if not name:
        raise KcnnError("the run's config.json names no data set; its test split cannot be rebuilt")
    seed = s.get("seed", defaults.SEED)
    args = (s.get("val_split", defaults.VAL_SPLIT), seed, s.get("limit"))
    test_split = s.get("test_split", defaults.TEST_SPLIT)
    try:
        data = datasets.load(
            name, s.get("data_dir"), seed, s.get("shapes_count", defaults.SHAPES_COUNT)
        )
    except KcnnError as e:
        raise KcnnError(f"the run's data set cannot be loaded here ({e})") from None
    recorded = s.get("data_fingerprint")
    if recorded and recorded != data_fingerprint(data):
        raise KcnnError(
            f"the data set {name} is not the data this run trained on (its fingerprint differs): "
            "its test split cannot be rebuilt; point the run at the original data"
        )
    parts = splits.make_splits(data, *args, test_split)
    files: dict[str, list[str]] = {}
    listing = _folder_files(name) if not datasets.DATASETS.get(name) else None
    if listing is not None:
        train_files, test_files = listing
        # The same split drawn over file numbers: the splits depend on the labels and the seed
        # alone, never on the pixels, so file i lands where image i did.
        index = dataclasses.replace(
            data,
            x_train=np.arange(len(data.y_train)),
            x_test=None if data.x_test is None else np.arange(len(data.y_test)),
        )
        where = splits.make_splits(index, *args, test_split)
        test_pool = test_files if test_files is not None else train_files
        files["val"] = [train_files[i] for i in where.x_val]
        files["test"] = [test_pool[i] for i in where.x_test]
    return parts, files


def _folder_files(dataset: str) -> tuple[list[str], list[str] | None] | None:
    """An image folder's files in the order its loader read them: (training files, test files
    or None); None when the data set is not an image folder."""
    from kcnn.data import formats

    root = Path(dataset).expanduser()
    if not root.is_dir():
        return None

    def listing(folder: Path) -> list[str]:
        return [str(f) for files in formats.class_files(folder).values() for f in files]

    if (root / "train").is_dir() and (root / "test").is_dir():
        return listing(root / "train"), listing(root / "test")
    return listing(root), None


def _data_shape(info: RunInfo, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The data's own image shape; without a record of it, the model's input with the run's fit
    mode 'none' (which is what a resized run amounts to for an arbitrary-size user image)."""
    return info.data_image_shape or input_shape


def load(run: str | Path) -> LoadedRun:
    info = find_run(run)  # before TensorFlow is imported: a wrong name answers at once
    from kcnn.data.pipeline import prepare_batch_fn
    from kcnn.models import backbones

    model = load_model(info.folder / folders.MODEL)
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
    from kcnn.use import calibration

    temperature = calibration.read_temperature(loaded.info.folder)  # fitted by `kcnn calibrate`
    if temperature is not None:
        probabilities = calibration.with_temperature(probabilities, temperature)
    k = min(top, probabilities.shape[-1])
    results = []
    for path, p in zip(readable, probabilities, strict=True):
        best = np.argsort(-p)[:k]
        results.append(
            {
                "image": str(path),
                "top": [{"class": loaded.label(i), "probability": float(p[i])} for i in best],
                "calibration_temperature": temperature,  # None: the model's own probabilities
            }
        )
    return results
