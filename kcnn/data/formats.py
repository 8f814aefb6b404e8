"""Readers for the image data formats kcnn accepts: IDX, npz, CIFAR pickles, image folders.

Readers return the arrays as the files hold them (uint8 or not); `datasets.validate` turns every
loader's result into the one form `Data` holds. Every reader opens files through `open_regular`
(a FIFO or a device is refused, never read) and raises `KcnnError` naming the file. Sizes are
read from headers before anything is allocated: arrays over `memory_budget()` (a share of the
memory the machine has available) are read from disk a few rows at a time where the format
allows — .npz (stored or compressed) and IDX (raw or .gz) image arrays — and CIFAR's pickles,
184 MB, are always read whole. Image folders are not arrays at all (kcnn.data.files).
"""

from __future__ import annotations

import codecs
import gzip
import io
import os
import pickle
import stat
import zipfile
from pathlib import Path

import numpy as np

from kcnn import defaults
from kcnn.errors import KcnnError

IDX_DTYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def file_kind(mode: int) -> str:
    return _KINDS.get(stat.S_IFMT(mode), "not a regular file")


def open_regular(path: Path):
    """Open `path` for binary reading only if it is a regular file.

    The file is opened non-blocking and checked with fstat on the open descriptor, so a FIFO is
    never waited on (a blocking open of a FIFO hangs until a writer appears) and nothing can be
    swapped in between the check and the read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except IsADirectoryError:
        raise KcnnError(
            f"{path} is a folder where a file belongs; replace it with the file"
        ) from None
    except OSError as e:
        raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise KcnnError(
            f"{path} is {file_kind(mode)}, not a regular file; point kcnn at a data file"
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def read_bytes(path: Path) -> bytes:
    with open_regular(path) as f:
        try:
            return f.read()
        except OSError as e:
            raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None


def human_bytes(n: int) -> str:
    if n < 1024:
        return f"{n:,} bytes"
    for unit in ("KB", "MB", "GB"):
        n /= 1024
        if n < 1024 or unit == "GB":
            return f"{n:,.1f} {unit}"


def memory_budget() -> int:
    """Bytes of arrays kcnn reads into memory: `defaults.DATA_MEMORY_SHARE` of the memory this
    machine has available; bigger arrays are read from their file (kcnn.data.disk_rows)."""
    from kcnn.data.image_cache import available_memory

    return int(defaults.DATA_MEMORY_SHARE * available_memory())


def fits_memory(nbytes: int) -> bool:
    return nbytes <= memory_budget()


def unpack_folder() -> Path:
    """Where compressed arrays too big for memory are unpacked (unnamed files, gone at exit)."""
    from kcnn.data.image_cache import cache_root

    return cache_root() / "unpacked"


def _room_to_unpack(nbytes: int, what: str) -> None:
    """Refuse a compressed array that fits neither memory nor half the unpack folder's disk."""
    import shutil

    folder = unpack_folder()
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    free = shutil.disk_usage(probe).free
    if nbytes > free // 2:
        raise KcnnError(
            f"{what} would take {human_bytes(nbytes)}, more than this machine's memory holds "
            f"({human_bytes(memory_budget())} for arrays) or half the {human_bytes(free)} free "
            f"in {folder} to unpack it to; use a smaller subset"
        )


def _array_bytes(shape: tuple[int, ...], dtype) -> int:
    return int(np.prod(shape, dtype=object)) * np.dtype(dtype).itemsize


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (the format of the original MNIST and Fashion-MNIST files), gzipped or raw.

    The header is read first and the size it promises checked before anything is allocated: an
    array over `memory_budget()` is read from the file (or, gzipped, from an unnamed unpacked
    copy on disk) a few rows at a time instead (`DiskRows`), never decompressed into memory.
    """
    with open_regular(path) as raw:
        stream = gzip.GzipFile(fileobj=raw) if path.suffix == ".gz" else raw
        try:
            head = stream.read(4)
            if len(head) < 4 or head[0] != 0 or head[1] != 0 or head[2] not in IDX_DTYPES:
                raise KcnnError(f"{path} is not an IDX file (wrong magic number); re-download it")
            ndim = head[3]
            dim_bytes = stream.read(4 * ndim)
            if len(dim_bytes) < 4 * ndim:
                raise KcnnError(f"{path} is truncated (header cut short); re-download it")
            dims = tuple(int.from_bytes(dim_bytes[4 * i : 4 * i + 4], "big") for i in range(ndim))
            dtype = np.dtype(IDX_DTYPES[head[2]])
            expected = _array_bytes(dims, dtype)
            if not fits_memory(expected) and len(dims) > 1:
                return _idx_on_disk(path, raw, stream, dims, dtype, expected)
            payload = stream.read(expected + 1)
        except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
            if path.suffix != ".gz":
                raise KcnnError(f"cannot read {path}: {e.strerror or e}") from None
            raise KcnnError(f"{path} is not a valid gzip file ({e}); re-download it") from None
    if len(payload) != expected:
        raise KcnnError(
            f"{path} holds {len(payload)}{'+' if len(payload) > expected else ''} data bytes but "
            f"its header promises {expected}; the file is truncated or corrupt, re-download it"
        )
    return np.frombuffer(payload, dtype=dtype).reshape(dims)


def _idx_on_disk(path: Path, raw, stream, dims, dtype, expected: int):
    """An IDX array too big for memory, read from its file (raw) or from an unnamed unpacked
    copy (.gz), a few rows at a time (kcnn.data.disk_rows)."""
    from kcnn.data.disk_rows import DiskRows, unpacked

    if stream is raw:
        size = os.fstat(raw.fileno()).st_size
        offset = 4 + 4 * len(dims)
        if size - offset != expected:
            raise KcnnError(
                f"{path} holds {size - offset} data bytes but its header promises {expected}; "
                "the file is truncated or corrupt, re-download it"
            )
        again = open_regular(path)  # a descriptor of its own: the `with` closes this one
        return DiskRows(again, offset, dims, dtype)
    _room_to_unpack(expected, str(path))
    return DiskRows(unpacked(stream, expected, unpack_folder()), 0, dims, dtype)


def _find(folder: Path, stems: list[str]) -> Path | None:
    for stem in stems:
        for candidate in (folder / stem, folder / f"{stem}.gz"):
            if os.path.lexists(candidate):  # a FIFO or folder under this name is an error, later
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


NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")


def _member_name(archive: zipfile.ZipFile, key: str) -> str:
    return f"{key}.npy" if f"{key}.npy" in archive.namelist() else key


def _member_header(archive: zipfile.ZipFile, key: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """The shape and dtype an .npz member declares, read without reading its data, and where
    its data begins within the member."""
    with archive.open(_member_name(archive, key)) as member:
        version = np.lib.format.read_magic(member)
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(member)
        start = member.tell()
    if fortran and len(shape) > 1:
        start = -1  # not rows in order: cannot be read a row at a time
    return shape, dtype, start


def _npz_on_disk(path: Path, archive: zipfile.ZipFile, key: str, shape, dtype, start: int):
    """An .npz image array too big for memory, read a few rows at a time from the file (stored
    uncompressed) or from an unnamed unpacked copy (compressed)."""
    from kcnn.data.disk_rows import DiskRows, unpacked, zip_member_offset

    if start < 0 or dtype.hasobject or not shape:
        raise KcnnError(
            f"{path}'s {key} is too big for memory ({_array_bytes(shape, dtype):,} bytes) and not "
            "stored as rows in order; save it with np.savez from a C-ordered array"
        )
    info = archive.getinfo(_member_name(archive, key))
    nbytes = _array_bytes(shape, dtype)
    if info.compress_type == zipfile.ZIP_STORED:
        offset = zip_member_offset(path, info) + start
        if os.path.getsize(path) < offset + nbytes:
            raise KcnnError(f"{path}'s {key} is cut short; the file is truncated, re-create it")
        return DiskRows(open_regular(path), offset, shape, dtype)
    _room_to_unpack(nbytes, f"{path}'s {key}")
    with archive.open(info) as member:
        member.read(start)
        return DiskRows(unpacked(member, nbytes, unpack_folder()), 0, shape, dtype)


def read_npz(path: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """An .npz file with arrays x_train, y_train, x_test, y_test (Keras's mnist.npz is one).

    The arrays' headers are read first: when they declare more than `memory_budget()`, the
    image arrays are read from the file a few rows at a time (`_npz_on_disk`), never loaded.
    """
    try:
        with open_regular(path) as raw:
            # allow_pickle=False: an .npz must never be able to run code.
            with np.load(raw, allow_pickle=False) as f:
                missing = [k for k in NPZ_KEYS if k not in f.files]
                if missing:
                    raise KcnnError(
                        f"{path} lacks array(s) {', '.join(missing)}; an .npz data set needs "
                        f"{', '.join(NPZ_KEYS)} (it has: {', '.join(f.files) or 'nothing'})"
                    )
                declared = [_member_header(f.zip, k) for k in NPZ_KEYS]
                if fits_memory(sum(_array_bytes(s, d) for s, d, _ in declared)):
                    arrays = tuple(f[k] for k in NPZ_KEYS)
                else:
                    arrays = tuple(
                        _npz_on_disk(path, f.zip, k, *declared[i]) if k.startswith("x_") else f[k]
                        for i, k in enumerate(NPZ_KEYS)
                    )
    except KcnnError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError, KeyError) as e:
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
    raw = read_bytes(path)
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


def _is_int(value) -> bool:
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def label_text(value: int) -> str:
    """A label for a message, however large (Python will not print an int of 4,300+ digits)."""
    value = int(value)
    return (
        str(value)
        if abs(value) < 10**100
        else f"a {'negative ' if value < 0 else ''}{value.bit_length()}-bit number"
    )


def _cifar_arrays(path: Path, label_key: str, classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Images (N, 32, 32, 3) and labels 0..classes-1 of one batch, whose types and values are
    checked, not coerced (a label of 10³⁰ would not even fit the int64 array)."""
    batch = read_cifar_batch(path)
    if "data" not in batch or label_key not in batch:
        raise KcnnError(f"{path} lacks '{label_key}' or 'data': not a CIFAR batch of this data set")
    data, labels = batch["data"], batch[label_key]
    if (
        not isinstance(data, np.ndarray)
        or data.dtype != np.uint8
        or data.ndim != 2
        or data.shape[1] != 3 * 32 * 32
    ):
        held = (
            f"an array of shape {data.shape} {data.dtype}"
            if isinstance(data, np.ndarray)
            else f"a {type(data).__name__}"
        )
        raise KcnnError(
            f"{path} holds {held} as data, expected (N, 3072) uint8; the file is corrupt, "
            "re-download it"
        )
    if not isinstance(labels, list) or not all(_is_int(v) for v in labels):
        raise KcnnError(
            f"{path} holds {type(labels).__name__} '{label_key}', expected a list of whole-number "
            "labels; the file is corrupt, re-download it"
        )
    if len(data) != len(labels):
        raise KcnnError(f"{path} holds {len(data)} images but {len(labels)} labels")
    bad = next((i for i, v in enumerate(labels) if not 0 <= int(v) < classes), None)
    if bad is not None:
        raise KcnnError(
            f"{path} holds the label {label_text(labels[bad])} (image {bad}) in '{label_key}'; "
            f"this data set's labels are 0..{classes - 1}: the file is corrupt, re-download it"
        )
    images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, np.asarray(labels, dtype=np.int64)


def read_cifar10(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The original `cifar-10-batches-py/` folder (data_batch_1..5 and test_batch)."""
    if (folder / "cifar-10-batches-py").is_dir():
        folder = folder / "cifar-10-batches-py"
    parts = [_cifar_arrays(folder / f"data_batch_{i}", "labels", 10) for i in range(1, 6)]
    x_test, y_test = _cifar_arrays(folder / "test_batch", "labels", 10)
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        x_test,
        y_test,
    )


CIFAR100_CLASSES = {"fine": 100, "coarse": 20}


def read_cifar100(folder: Path, label_mode: str = "fine") -> tuple[np.ndarray, ...]:
    """The original `cifar-100-python/` folder (train and test)."""
    if (folder / "cifar-100-python").is_dir():
        folder = folder / "cifar-100-python"
    key = f"{label_mode}_labels"
    classes = CIFAR100_CLASSES[label_mode]
    x_train, y_train = _cifar_arrays(folder / "train", key, classes)
    x_test, y_test = _cifar_arrays(folder / "test", key, classes)
    return x_train, y_train, x_test, y_test


def class_names_cifar100(folder: Path) -> list[str] | None:
    """Fine label names from CIFAR-100's `meta` file, when it is there."""
    if (folder / "cifar-100-python").is_dir():
        folder = folder / "cifar-100-python"
    if not os.path.lexists(folder / "meta"):
        return None
    meta = read_cifar_batch(folder / "meta")
    names = meta.get("fine_label_names")
    if names is None:
        return None
    if not isinstance(names, list) or not all(isinstance(n, bytes | str) for n in names):
        raise KcnnError(f"{folder / 'meta'} holds no list of class names; re-download it")
    return [n.decode() if isinstance(n, bytes) else n for n in names]
