"""A finished run's model on new images, seen exactly as the run saw its data.

An image file is first brought to the run's data set's own image form (its channels and size,
e.g. 8×8 grey for `digits`), then through the very pipeline function training used
(`prepare_batch_fn`: channel conversion, pad-or-resize to the model's input, scaling or the
backbone's `preprocess_input`). `LoadedRun` is shared by `predict`, `visualize` and `export`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from kcnn import progress
from kcnn.errors import KcnnError
from kcnn.runs import folders
from kcnn.runs.browse import RunInfo, find_run
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder
from kcnn.use import calibration, unfamiliar

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
    _parts: Any = field(default=None, repr=False)  # the run's splits, rebuilt once (labelled)
    _typical: Any = field(default=None, repr=False)  # (the Typical or None,) once read
    _nearest: Any = field(default=None, repr=False)  # ((Nearest, extract) or None,) once read
    _temperature: Any = field(default=None, repr=False)  # (the temperature or None,) once read
    tta: str | None = None  # test-time augmentation of every prediction (kcnn.data.tta)

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
        return predict_batches(self._forward, self.prepare, images, batch, self.tta)

    def typical(self):
        """What the run's training images look like (`kcnn.data.typical.Typical`), read once;
        None for a run that recorded none (older runs, too few images) or one of images of
        another form. A damaged record is a warning, never a refusal: the model still answers."""
        if self._typical is None:
            self._typical = (unfamiliar.read_typical(self),)
        return self._typical[0]

    def nearest(self):
        """(the run's `kcnn.data.nearest.Nearest`, the model's feature function), read once;
        None for a run that recorded none, an exported model file (no features to take) or a
        record of another width than the model's features. A damaged record is a warning."""
        if self._nearest is None:
            self._nearest = (unfamiliar.read_nearest(self),)
        return self._nearest[0]

    def features(self, images: np.ndarray, batch: int = PREDICT_BATCH) -> np.ndarray:
        """The model's features (what its last Dense layer takes in) of uint8 images in the data
        set's form, without test-time augmentation: the training images' were taken so."""
        _, extract = self.nearest()
        return np.concatenate(
            [
                np.asarray(extract(self.prepare(images[i : i + batch])), dtype=np.float32)
                for i in range(0, len(images), batch)
            ]
        )

    def temperature(self) -> float | None:
        """The temperature `kcnn calibrate` fitted, read once; None when uncalibrated, and for a
        damaged temperature.json, which is one `warning:` line (`calibration.read_temperature`)."""
        if self._temperature is None:
            self._temperature = (calibration.read_temperature(self.info.folder, progress.warn),)
        return self._temperature[0]

    def splits(self):
        """The run's splits rebuilt from config.json as training made them (the same data, by
        its fingerprint), or None when that data cannot be had here."""
        try:
            if self._parts is None:
                self._parts = _rebuild(self.info.settings, self.info.dataset, self.data_shape)
        except KcnnError:
            return None
        parts = self._parts[0]
        return parts if parts.x_test.shape[1:] == self.data_shape else None

    def test_split(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Every test image (uint8, the data set's form) and its label, or None."""
        parts = self.splits()
        if parts is None:
            return None
        images, labels, _ = _readable(parts.x_test, np.asarray(parts.y_test), None)
        return images, labels

    def train_images(self) -> np.ndarray | None:
        """The run's training images (its training split only: neither validation nor test)."""
        parts = self.splits()
        return None if parts is None else parts.x_train

    def test_images(self, count: int) -> np.ndarray | None:
        """The first `count` test images of the run's data set, rebuilt from config.json (same
        seed, limit and splits), or None when that data cannot be had here."""
        from kcnn import defaults
        from kcnn.data import datasets, splits
        from kcnn.data.files import is_files

        s = self.info.settings
        if not self.info.dataset:
            return None
        try:
            data = datasets.load(
                self.info.dataset,  # an offline stand-in's own: never a download again
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
            if is_files(parts.x_test):
                _, parts = _read_folder(data, parts, self.data_shape, s.get("cache") or "auto")
            images = parts.x_test[:count]
        except (KcnnError, OSError, KeyError, ValueError):
            return None
        return images if images.shape[1:] == self.data_shape else None

    def labelled(self, split: str = "test", limit: int | None = None) -> Labelled:
        """Every image of the run's test (or validation) split with its label, rebuilt from
        config.json as training split it, and for an image-folder data set each image's file.
        `limit`: a stratified subset of at most that many, drawn from the run's seed, in the
        split's order. The data must be the very data the run trained on (its fingerprint)."""
        if split not in ("test", "val"):
            raise ValueError(f"split {split!r}: test or val")
        if self._parts is None:
            self._parts = _rebuild(self.info.settings, self.info.dataset, self.data_shape)
        parts, files = self._parts
        x, y = (parts.x_test, parts.y_test) if split == "test" else (parts.x_val, parts.y_val)
        paths = files.get(split)
        if x.shape[1:] != self.data_shape:
            raise KcnnError(
                f"the run's data set gives {'×'.join(map(str, x.shape[1:]))} images now, but the "
                f"run was trained on {'×'.join(map(str, self.data_shape))}"
            )
        if limit is not None and limit < len(y):
            from kcnn.data.splits import stratified_subset

            seed = self.info.settings.get("seed", 0)
            chosen = np.sort(stratified_subset(np.arange(len(y)), y, limit, seed))
            x, y = _take(x, chosen), y[chosen]
            paths = [paths[i] for i in chosen] if paths is not None else None
        return Labelled(*_readable(x, y, paths))


@dataclass
class Labelled:
    """Images of one split of a run's data, their labels, and their files (image folders only:
    None for registered data sets and .npz files, whose images have no file of their own)."""

    images: np.ndarray  # uint8 (N, *data_shape)
    labels: np.ndarray  # int64 (N,)
    paths: list[str] | None

    def __len__(self) -> int:
        return len(self.labels)


def predict_batches(
    forward, prepare, images: np.ndarray, batch: int = PREDICT_BATCH, tta: str | None = None
) -> np.ndarray:
    """`forward(prepare(chunk))` over `images` a batch at a time, as one float32 array; with
    `tta`, each chunk's probabilities averaged over its views (kcnn.data.tta)."""
    from kcnn.data import tta as views

    parts = [
        views.average(forward, np.asarray(prepare(images[i : i + batch])), tta)
        for i in range(0, len(images), batch)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float32)


def _rebuild(settings: dict[str, Any], name: str | None, shape=None):
    """(the run's splits, {split: file paths}) from config.json's settings, exactly as the trainer
    made them, from the data set `name` the run used (RunInfo.dataset: an offline stand-in's own,
    never the download it stood in for); refused when the data cannot be loaded here or is not
    the data the run saw. An image folder's images are files, read at `shape` (the run's data
    shape) when they are used, through the run's image cache."""
    from kcnn import defaults
    from kcnn.data import datasets, splits
    from kcnn.data.files import is_files
    from kcnn.data.prepared import data_fingerprint

    s = settings
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
    if is_files(parts.x_train):
        if shape is not None:
            _, parts = _read_folder(data, parts, shape, s.get("cache") or "auto")
        files = {"val": parts.x_val.files, "test": parts.x_test.files}
    return parts, files


def _take(x, rows):
    from kcnn.data.files import take

    return take(x, rows)


def _read_folder(data, parts, shape, cache: str):
    """An image folder's data and splits read at a run's data shape (height, width, channels)."""
    from kcnn.data.prepared import read_folder_at

    height, width, channels = shape
    data, parts, _ = read_folder_at(
        data, parts, "RGB" if channels == 3 else "L", (width, height), cache
    )
    return data, parts


def _readable(x, y: np.ndarray, paths: list[str] | None):
    """The images of a split as an array, with their labels and files: an image folder's files
    decoded now, those that fail left out (training skipped them too)."""
    from kcnn.data.files import is_files

    if not is_files(x):  # an array, in memory or read from disk by rows (kcnn.data.disk_rows)
        return (x if isinstance(x, np.ndarray) else x[:]), y, paths
    pixels, kept = x.read(np.arange(len(x)))
    return pixels, y[kept], ([p for p, k in zip(paths, kept, strict=True) if k] if paths else paths)


def _data_shape(info: RunInfo, input_shape: tuple[int, int, int]) -> tuple[int, int, int]:
    """The data's own image shape; without a record of it, the model's input with the run's fit
    mode 'none' (which is what a resized run amounts to for an arbitrary-size user image)."""
    return info.data_image_shape or input_shape


def load(run: str | Path, exported: str | Path | None = None, tta: str | None = None) -> LoadedRun:
    """A run ready to predict: its own model.keras, or with `exported` an exported model file
    (`.onnx`, `.tflite`, a SavedModel folder) in its runtime, fed by the run's preprocessing.
    `tta`: none, flip or crops (kcnn.data.tta); None: the run's own --tta setting."""
    info = find_run(run)  # before TensorFlow is imported: a wrong name answers at once
    mode = choose_tta(info, tta)
    model, forward = None, None
    if exported is not None:
        from kcnn.use import runtimes

        runtime = runtimes.open_model(exported)
        input_shape = _exported_input_shape(info, runtime, exported)
        forward = runtime.predict
    else:
        try:
            model_file = RunFolder(info.folder).model_file()
        except FileNotFoundError:
            model_file = (
                info.folder / folders.MODEL
            )  # load_model says what is missing and what to do
        except Damaged as e:
            raise KcnnError(f"cannot use {e.path}: {e.reason}") from None
        model = load_model(model_file)
        input_shape = _model_input_shape(info, model, model_file)
    from kcnn.data.pipeline import prepare_batch_fn
    from kcnn.models import backbones

    preprocess = backbones.get(info.backbone).preprocess_input() if info.backbone else None
    data_shape = _data_shape(info, input_shape)
    prepare = prepare_batch_fn(data_shape, input_shape, preprocess)
    loaded = LoadedRun(info, model, data_shape, input_shape, prepare, forward, tta=mode)
    if exported is not None:
        _check_outputs(loaded, exported)
    return loaded


def choose_tta(info: RunInfo, requested: str | None) -> str | None:
    """The test-time augmentation predictions of a run use: `requested` (none, flip, crops), or
    the run's own `tta` setting; flip refused on data where a mirror image is another class."""
    from kcnn.data import tta

    own = info.settings.get("tta")
    mode = requested if requested is not None else (own if isinstance(own, str) else None)
    return tta.check(mode, info.dataset)


def _model_input_shape(info: RunInfo, model, path: Path) -> tuple[int, int, int]:
    """The run's input shape, which its model.keras must take, and the run's classes, which it
    must give: a model file of another network put in the folder is refused in one line, never
    fed images of a shape it cannot take. (A model that states no shapes, as a subclassed one
    may not, is taken at the run's word.)"""
    takes, gives = _dims(model, "input_shape"), _dims(model, "output_shape")
    shape = info.input_shape or (tuple(takes) if takes and None not in takes else None)
    if shape is None or len(shape) != 3:
        raise KcnnError(f"cannot tell which image size {path} takes: {info.folder} records none")
    if takes is not None and (
        len(takes) != 3 or any(t not in (None, s) for t, s in zip(takes, shape, strict=True))
    ):
        got = "×".join("?" if d is None else str(d) for d in takes) or "other"
        raise KcnnError(
            f"{path} takes {got} inputs but the run {info.folder.name} records "
            f"{'×'.join(map(str, shape))}: it is not this run's model; retrain the run"
        )
    classes = len(info.class_names)
    if gives is not None and (len(gives) != 1 or (classes and gives[0] not in (None, classes))):
        raise KcnnError(
            f"{path} gives outputs of shape {tuple(gives)} but the run {info.folder.name} has "
            f"{classes} classes: it is not this run's model; retrain the run"
        )
    return tuple(int(v) for v in shape)


def _dims(model, which: str) -> list[int | None] | None:
    """A model's input or output shape without its batch axis; None when it states none (or
    several: a model of two inputs is refused when it is called)."""
    try:
        shape = getattr(model, which)
    except Exception:  # noqa: BLE001  (Keras raises for a model never built)
        return None
    if isinstance(shape, list) and len(shape) == 1:
        shape = shape[0]
    if isinstance(shape, list):
        return []  # several inputs or outputs: never one of a run's images or class lists
    if not isinstance(shape, tuple) or not shape:
        return None
    return [None if d is None else int(d) for d in shape[1:]]


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
    """An image file as uint8 (H, W, C) in `shape`: any mode (RGBA, P, L, 16-bit...) and size.

    The file may come from anyone: it is opened only if it is a regular file (a FIFO, a device or
    a link to one is refused without being waited on: `formats.open_regular`), Pillow's
    decompression-bomb guard is kcnn's pixel limit with its warning made an error (a small file
    that claims a huge size is refused from its header), and whatever a damaged file makes the
    decoder raise is one `KcnnError` naming the file.
    """
    import warnings

    from PIL import Image

    from kcnn import defaults
    from kcnn.data import formats

    Image.MAX_IMAGE_PIXELS = defaults.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with formats.open_regular(path) as f, Image.open(f) as im:
                a = _decoded(im, shape)
    except KcnnError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise KcnnError(
            f"{path} is too large an image (over the limit of {defaults.MAX_IMAGE_PIXELS:,} "
            "pixels, MAX_IMAGE_PIXELS in kcnn/defaults.py): not read"
        ) from None
    except Image.UnidentifiedImageError:
        raise KcnnError(f"cannot read image {path}: not an image Pillow can decode") from None
    except Exception as e:  # noqa: BLE001  (a damaged file can make a decoder raise anything)
        reason = str(e) or type(e).__name__
        raise KcnnError(f"cannot read image {path}: {reason}") from None
    return a.reshape(shape)


def _decoded(im, shape: tuple[int, int, int]) -> np.ndarray:
    """The image as training decodes an image folder's files (kcnn.data.decode: EXIF orientation
    applied, 16-bit greys scaled, JPEG decoded at its DCT scale when that covers `shape`)."""
    from kcnn.data.decode import decoded

    return decoded(im, "L" if shape[2] == 1 else "RGB", (shape[1], shape[0]))


def _folder_images(folder: Path) -> Iterator[Path | KcnnError]:
    """The image files directly inside a named folder, sorted; an entry that is a link leading
    out of the folder is a refusal (what the folder holds is read, nothing it points at)."""
    try:
        root = folder.resolve(strict=True)
        entries = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    except OSError as e:
        yield KcnnError(f"cannot list {folder}: {e.strerror or e}")
        return
    for entry in entries:
        if entry.is_symlink():
            try:
                inside = entry.resolve(strict=True).is_relative_to(root)
            except (OSError, RuntimeError):  # a dangling or looping link
                inside = False
            if not inside:
                yield KcnnError(f"{entry} is a link out of {folder}; not read")
                continue
        yield entry


def _listed(paths: list[Path]) -> Iterator[Path | KcnnError]:
    for path in paths:
        if path.is_dir():
            yield from _folder_images(path)
        else:
            yield path


def image_files(paths: list[Path]) -> list[Path]:
    """Files named on the command line, and the image files inside named folders (sorted;
    links out of a folder left out)."""
    return [p for p in _listed(paths) if isinstance(p, Path)]


def _batches(items: list[Path | KcnnError], shape: tuple[int, int, int]):
    """The readable images, PREDICT_BATCH at a time, each batch with the refusals (one message
    per file) met while reading it; the last batch may be short or empty."""
    batch: list[tuple[Path, np.ndarray]] = []
    problems: list[str] = []
    for item in items:
        try:
            if isinstance(item, KcnnError):
                raise item
            batch.append((item, read_image(item, shape)))
        except KcnnError as e:
            problems.append(str(e))
        if len(batch) == PREDICT_BATCH:
            yield batch, problems
            batch, problems = [], []
    yield batch, problems


def predict_files(
    loaded: LoadedRun, paths: list[Path], top: int, refused: list[str] | None = None
) -> Iterator[dict[str, Any]]:
    """Top-`top` classes per readable image, yielded as each batch is predicted.

    Images are read and predicted PREDICT_BATCH at a time, so a folder of any size takes the
    memory of one batch, and more than one batch shows progress on stderr. An image that cannot
    be read is one `error:` line on stderr (its message also added to `refused`), and the others
    are still predicted; when none can be, that is the error (one line, exit 2). An image unlike
    the run's training images is one `warning:` line.
    """
    if top < 1:
        raise KcnnError(f"--top {top}: give at least 1")
    items = list(_listed(paths))  # names only: the images are read a batch at a time
    unsaid: list[str] = []  # refusals not printed yet: until an image is read, one may be the error
    done = 0
    total = sum(isinstance(i, Path) for i in items)
    # on stderr: stdout holds the rows (or the JSON); one batch is too short to be worth a line
    show = total > PREDICT_BATCH
    with progress.steps("predicting", total, "images", quiet=True, show=show) as shown:
        for batch, problems in _batches(items, loaded.data_shape):
            unsaid += problems
            if refused is not None:
                refused += problems
            if batch or done:
                for message in unsaid:
                    _error(message)
                unsaid = []
            if batch:
                yield from _top(loaded, batch, top)
                done += len(batch)
            shown.advance(len(batch) + len(problems))
    if not done and not unsaid:
        raise KcnnError("no image files given (PNG or JPEG files, or folders holding them)")
    if not done:
        raise KcnnError(
            unsaid[0]
            if len(unsaid) == 1
            else f"none of the {len(unsaid)} images could be read ({unsaid[0]}; ...)"
        )


def _top(loaded: LoadedRun, batch: list[tuple[Path, np.ndarray]], top: int):
    images = np.stack([image for _, image in batch])
    probabilities = loaded.predict(images)
    temperature = loaded.temperature()  # fitted by `kcnn calibrate`
    if temperature is not None:
        probabilities = calibration.with_temperature(probabilities, temperature)
    checks = zip(
        unfamiliar.distances(loaded, images),
        unfamiliar.feature_distances(loaded, images),
        strict=True,
    )
    k = min(top, probabilities.shape[-1])
    for (path, _), p, (pixels, features) in zip(batch, probabilities, checks, strict=True):
        best = np.argsort(-p)[:k]
        if any(d is not None and d["far"] for d in (pixels, features)):
            progress.warn(unfamiliar.unlike(path, pixels, features))
        yield {
            "image": str(path),
            "top": [{"class": loaded.label(i), "probability": float(p[i])} for i in best],
            "calibration_temperature": temperature,  # None: the model's own probabilities
            "distance": pixels,  # from the training images' pixels; None: the run recorded none
            "feature_distance": features,  # in the model's feature space; None: none recorded
        }


def _error(message: str) -> None:
    """One image refused, in the command line's error format; the others are still predicted."""
    from kcnn.text import terminal

    print(f"error: {terminal(message)}", file=sys.stderr, flush=True)
