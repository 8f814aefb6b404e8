"""Readers for the image data formats kcnn accepts: IDX, npz, CIFAR pickles, image folders.

Every reader returns images as uint8 arrays shaped (N, H, W, C) and labels as int64 (N,),
and raises `KcnnError` with a message that names the file and what is wrong with it.
"""

from __future__ import annotations

import codecs
import gzip
import io
import pickle
import zipfile
from pathlib import Path

import numpy as np

from kcnn.errors import KcnnError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def _open_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None
    if path.suffix == ".gz":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise KcnnError(f"{path} is not a valid gzip file ({e}); re-download it") from None
    return raw


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the format of the original MNIST and Fashion-MNIST files), gzipped or raw."""
    data = _open_bytes(path)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] not in IDX_DTYPES:
        raise KcnnError(f"{path} is not an IDX file (wrong magic number); re-download it")
    ndim = data[3]
    header = 4 + 4 * ndim
    if len(data) < header:
        raise KcnnError(f"{path} is truncated (header cut short); re-download it")
    dims = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    dtype = np.dtype(IDX_DTYPES[data[2]])
    expected = int(np.prod(dims)) * dtype.itemsize
    if len(data) - header != expected:
        raise KcnnError(
            f"{path} holds {len(data) - header} data bytes but its header promises {expected}; "
            "the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(data, dtype=dtype, offset=header).reshape(dims)


def _find(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_idx_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray] | None:
    """The four MNIST-style IDX files in `folder`, or None when they are not all there."""
    names = {
        "x_train": ["train-images-idx3-ubyte", "train-images.idx3-ubyte"],
        "y_train": ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"],
        "x_test": ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"],
        "y_test": ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"],
    }
    paths = {key: _find(folder, stems) for key, stems in names.items()}
    if not any(paths.values()):
        return None
    missing = [names[k][0] for k, p in paths.items() if p is None]
    if missing:
        raise KcnnError(f"{folder} holds some IDX files but not {', '.join(missing)} (.gz or raw)")
    arrays = {key: read_idx(path) for key, path in paths.items()}
    for split in ("train", "test"):
        x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
        if x.ndim != 3 or y.ndim != 1:
            raise KcnnError(f"{paths[f'x_{split}']} should hold images (N, H, W) and labels (N,)")
    return arrays["x_train"], arrays["y_train"], arrays["x_test"], arrays["y_test"]


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An .npz file with arrays x_train, y_train, x_test, y_test (Keras's mnist.npz is one)."""
    keys = ("x_train", "y_train", "x_test", "y_test")
    try:
        # allow_pickle=False: an .npz must never be able to run code.
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise KcnnError(
                    f"{path} lacks array(s) {', '.join(missing)}; an .npz data set needs "
                    f"{', '.join(keys)} (it has: {', '.join(f.files) or 'nothing'})"
                )
            arrays = tuple(f[k] for k in keys)
    except KcnnError:
        raise
    except FileNotFoundError:
        raise KcnnError(f"no such file: {path}") from None
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
        raise KcnnError(
            f"{path} is not a readable .npz file ({e}); check or re-create it"
        ) from None
    return arrays  # type: ignore[return-value]


class _CifarUnpickler(pickle.Unpickler):
    """CIFAR batches hold dicts, lists, bytes, numbers and NumPy arrays: refuse everything else.

    A pickle can name any importable callable and have it run on load. The original CIFAR files
    need only the three globals NumPy uses to rebuild an array (plus `_codecs.encode`, which
    Python 3 uses for bytes in protocol-2 pickles); any other global means the file is not a
    CIFAR batch, and it is refused before anything runs.
    """

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy._core.multiarray", "_reconstruct"): np.ndarray.__reduce__(np.zeros(0))[0],
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
        ("_codecs", "encode"): codecs.encode,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load global {module}.{name}") from None


def read_cifar_batch(path: Path) -> dict:
    """One CIFAR-10/100 python batch file, through the restricted unpickler."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise KcnnError(f"no such file: {path}") from None
    try:
        batch = _CifarUnpickler(io.BytesIO(raw), encoding="bytes").load()
    except pickle.UnpicklingError as e:
        raise KcnnError(f"{path} is not a CIFAR batch and was not loaded: {e}") from None
    except Exception as e:  # a damaged pickle can fail in many ways
        raise KcnnError(
            f"{path} is not a readable CIFAR batch ({type(e).__name__}); re-download it"
        ) from None
    if not isinstance(batch, dict):
        raise KcnnError(f"{path} is not a CIFAR batch (holds a {type(batch).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}


def _cifar_arrays(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    batch = read_cifar_batch(path)
    if "data" not in batch or label_key not in batch:
        raise KcnnError(f"{path} lacks '{label_key}' or 'data': not a CIFAR batch of this data set")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise KcnnError(
            f"{path} holds data of shape {data.shape}, expected (N, 3072) uint8; the file is corrupt"
        )
    if len(data) != len(labels):
        raise KcnnError(f"{path} holds {len(data)} images but {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1), labels


def read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original `cifar-10-batches-py/` folder (data_batch_1..5 and test_batch)."""
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    parts = [_cifar_arrays(folder / f"data_batch_{i}", "labels") for i in range(1, 6)]
    x_test, y_test = _cifar_arrays(folder / "test_batch", "labels")
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
    )


def read_cifar100(folder: Path, label_mode: str = "fine") -> tuple[np.ndarray, ...]:
    """The original `cifar-100-python/` folder (train and test)."""
    if (folder / "cifar-100-python").is_dir():
        folder = folder / "cifar-100-python"
    key = f"{label_mode}_labels"
    x_train, y_train = _cifar_arrays(folder / "train", key)
    x_test, y_test = _cifar_arrays(folder / "test", key)
    return x_train, y_train, x_test, y_test


def class_names_cifar100(folder: Path) -> list[str] | None:
    """Fine label names from CIFAR-100's `meta` file, when it is there."""
    if (folder / "cifar-100-python").is_dir():
        folder = folder / "cifar-100-python"
    if not (folder / "meta").is_file():
        return None
    meta = read_cifar_batch(folder / "meta")
    names = meta.get("fine_label_names")
    return [n.decode() if isinstance(n, bytes) else str(n) for n in names] if names else None


def read_image_folder(folder: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Images in one subfolder per class, all decoded to uint8 at the size of the first image.

    Images of other sizes are resized to match; grayscale and colour may not be mixed.
    """
    from PIL import Image, UnidentifiedImageError

    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    if len(classes) < 2:
        raise KcnnError(
            f"{folder} should hold one subfolder of images per class (at least two); found "
            f"{len(classes)}"
        )
    images, labels, size, mode = [], [], None, None
    for index, name in enumerate(classes):
        files = sorted(
            p for p in (folder / name).iterdir() if p.is_file() and not p.name.startswith(".")
        )
        if not files:
            raise KcnnError(f"class folder {folder / name} holds no images")
        for file in files:
            try:
                with Image.open(file) as im:
                    im.load()
                    if mode is None:
                        mode = "L" if im.mode in ("1", "L", "I;16", "I") else "RGB"
                        size = im.size
                    im = im.convert(mode)
                    if im.size != size:
                        im = im.resize(size, Image.BILINEAR)
                    pixels = np.asarray(im, dtype=np.uint8)
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
                reason = "not an image" if isinstance(e, UnidentifiedImageError) else str(e)
                raise KcnnError(
                    f"{file} cannot be read as an image ({reason}); remove or replace it"
                ) from None
            images.append(pixels if pixels.ndim == 3 else pixels[..., None])
            labels.append(index)
    return np.stack(images), np.asarray(labels, dtype=np.int64), classes
