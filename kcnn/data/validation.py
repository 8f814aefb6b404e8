"""What a loaded data set holds, and the one check every loader's result passes through.

`Data` documents the contract; `validate` enforces it for every source alike, so the training
code never meets float pixels, string labels, label gaps or empty splits.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from kcnn import defaults
from kcnn.data.formats import label_text
from kcnn.errors import KcnnError


@dataclass
class Data:
    """A loaded data set, as `validate` leaves it:

    - images uint8 (N, H, W, C) with C 1 or 3, N ≥ 1, H, W ≥ 1; pixel values 0..255: a NumPy
      array (possibly memory-mapped from the file it came from), or for an image folder
      `kcnn.data.files.FileImages`, which decodes its files when they are read. Float inputs
      are scaled once, here, for every loader: when all float pixels of a data set lie in [0, 1]
      they are multiplied by 255, otherwise they are taken as 0..255 values; both are rounded.
      Values below 0 or above 255, NaN or infinity are an error, never clipped.
    - labels int64 (N,) in 0..K-1 with K = len(class_names) ≥ 2; labels given as names become
      indices of the sorted names, and integer labels that are not 0..K-1 (e.g. {3, 7, 100}) are
      renumbered in order, their values kept as class names.
    - test arrays are None when the source has none; otherwise the same image size as training,
      and every test label also occurs in training.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    class_names: list[str] | None  # None before `validate` when the labels must name the classes
    provenance: dict = field(default_factory=dict)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]


def validate(data: Data, where: str | None = None) -> Data:
    """Check a loaded data set and bring it to the contract documented on `Data`.

    `where` names the source in error messages (default: its provenance). Every problem is a
    `KcnnError` saying what is wrong, in which array, and what to do.
    """
    where = where or data.provenance.get("source") or data.name
    if (data.x_test is None) != (data.y_test is None):
        raise KcnnError(f"{where}: has test images but no test labels, or the other way round")
    x = _images(data.x_train, where, "x_train")
    xt = _images(data.x_test, where, "x_test") if data.x_test is not None else None
    if xt is not None and xt.shape[1:] != x.shape[1:]:
        raise KcnnError(
            f"{where}: x_test images are {_shape(xt)} but x_train images are {_shape(x)}; "
            "give both splits the same image size and channels"
        )
    x, xt = _as_uint8(x, xt, where)
    y = _labels(data.y_train, len(x), where, "y_train")
    yt = _labels(data.y_test, len(xt), where, "y_test") if xt is not None else None
    y, yt, names, renumbered = _classes(y, yt, data.class_names, where)
    provenance = dict(data.provenance)
    if renumbered is not None:
        provenance["label_values"] = renumbered
    return Data(data.name, x, y, xt, yt, names, provenance)


def _shape(x: np.ndarray) -> str:
    return "×".join(str(d) for d in x.shape[1:])


def _images(x, where: str, key: str) -> np.ndarray:
    from kcnn.data.disk_rows import DiskRows
    from kcnn.data.files import FileImages

    if isinstance(x, FileImages):  # an image folder: its files are checked when it is scanned
        return x
    if isinstance(x, DiskRows):  # an array too big for memory, read from its file by rows
        return _on_disk(x, where, key)
    if not isinstance(x, np.ndarray):
        raise KcnnError(f"{where}: {key} is a {type(x).__name__}, not an array of images")
    if x.dtype.kind not in "uif":
        kind = "complex" if x.dtype.kind == "c" else str(x.dtype)
        raise KcnnError(
            f"{where}: {key} holds {kind} values, not pixel numbers; store images as uint8 "
            "0..255 or floats in 0..1"
        )
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise KcnnError(
            f"{where}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3)"
        )
    if len(x) == 0:
        raise KcnnError(f"{where}: {key} holds no images (an empty split); add images to it")
    if x.shape[1] == 0 or x.shape[2] == 0:
        raise KcnnError(
            f"{where}: {key} holds zero-sized images ({x.shape[1]}×{x.shape[2]} pixels); "
            "images need at least one pixel each way"
        )
    if x.dtype.kind == "f":
        bad = ~np.isfinite(x)
        if bad.any():
            images = int(bad.any(axis=(1, 2, 3)).sum())
            nan = int(np.isnan(x).sum())
            raise KcnnError(
                f"{where}: {images:,} of the {len(x):,} images in {key} hold NaN or infinite "
                f"pixels ({nan:,} NaN, {int(bad.sum()) - nan:,} infinite); fix or drop them"
            )
    return x


def _on_disk(x, where: str, key: str):
    """An image array read from disk by rows: uint8 only (converting floats would need it in
    memory), and of a shape images have."""
    if x.dtype != np.uint8:
        raise KcnnError(
            f"{where}: {key} holds {x.dtype} values and is too big for memory; store images as "
            "uint8 0..255 to have kcnn read them from disk"
        )
    if x.ndim == 3:
        x = x.with_channel()
    if x.ndim != 4 or x.shape[-1] not in (1, 3) or 0 in x.shape:
        raise KcnnError(
            f"{where}: {key} has shape {x.shape}; expected (N, H, W), (N, H, W, 1) or (N, H, W, 3)"
        )
    return x


def _as_uint8(x: np.ndarray, xt: np.ndarray | None, where: str):
    """Both splits as uint8 0..255, scaled by one rule decided over the whole data set."""
    splits = [a for a in (x, xt) if a is not None]
    if all(a.dtype == np.uint8 for a in splits):
        return x, xt
    lows, highs = [float(a.min()) for a in splits], [float(a.max()) for a in splits]
    lo, hi = min(lows), max(highs)
    if lo < 0 or hi > 255:
        raise KcnnError(
            f"{where}: pixel values range over {lo:g}..{hi:g}; kcnn takes uint8 0..255 or floats "
            "in 0..1 or 0..255: rescale the images"
        )
    float_highs = [h for a, h in zip(splits, highs, strict=True) if a.dtype.kind == "f"]
    scale = 255.0 if float_highs and max(float_highs) <= 1.0 else 1.0

    def convert(a: np.ndarray) -> np.ndarray:
        if a.dtype == np.uint8:
            return a
        if a.dtype.kind != "f":
            return a.astype(np.uint8)
        out = np.empty(a.shape, np.uint8)
        for start in range(0, len(a), 4096):  # a float copy of one chunk at a time
            chunk = a[start : start + 4096] * a.dtype.type(scale)  # float32 stays float32: exact
            out[start : start + 4096] = np.rint(chunk, out=chunk)  # enough for 255 levels
        return out

    return convert(x), (convert(xt) if xt is not None else None)


def _labels(y, count: int, where: str, key: str) -> np.ndarray:
    """Labels as a 1-D array of int64 or of str (names), `count` of them."""
    if y is None:
        raise KcnnError(f"{where}: {key} is missing")
    y = np.asarray(y)
    if y.ndim == 2 and y.shape[1] == 1:
        y = y.reshape(-1)
    if y.ndim != 1:
        raise KcnnError(
            f"{where}: {key} must be integer class labels of shape (N,), got {y.dtype} {y.shape}"
        )
    if len(y) != count:
        raise KcnnError(f"{where}: {key} has {len(y)} labels but there are {count} images")
    kind = y.dtype.kind
    if kind in "US":
        return np.array([v.decode() if isinstance(v, bytes) else str(v) for v in y], dtype=object)
    if kind == "O":
        if all(isinstance(v, str | bytes) for v in y):
            return np.array([v.decode() if isinstance(v, bytes) else v for v in y], dtype=object)
        if all(isinstance(v, int | np.integer) for v in y):
            _in_int64(min(int(v) for v in y), max(int(v) for v in y), where, key)
            return y.astype(np.int64)
        raise KcnnError(
            f"{where}: {key} mixes names and numbers (or holds other objects); use either class "
            "names or integer class labels throughout"
        )
    if kind in "biu":
        _in_int64(int(y.min()), int(y.max()), where, key)  # uint64 past 2⁶³ would wrap round
        return y.astype(np.int64)
    if kind == "f" and np.isfinite(y).all() and (y == np.round(y)).all():
        lo, hi = float(y.min()), float(y.max())
        if max(-lo, hi) > FLOAT_LABEL_MAX:  # int64 would take 1e30 as garbage, silently
            raise KcnnError(
                f"{where}: {key} holds the label {lo if -lo > hi else hi:g}, too large to be a "
                f"class label (float labels must be whole numbers within ±2⁵³); store the labels "
                "as integers 0..K-1 or as class names"
            )
        return y.astype(np.int64)
    raise KcnnError(
        f"{where}: {key} must be integer class labels (whole numbers) or class names, got "
        f"{y.dtype} values; round them or map them to classes"
    )


# Whole numbers a float64 holds exactly; past it a float label cannot name a class reliably.
FLOAT_LABEL_MAX = 2.0**53
INT64 = np.iinfo(np.int64)


def _in_int64(lo: int, hi: int, where: str, key: str) -> None:
    if lo < INT64.min or hi > INT64.max:
        raise KcnnError(
            f"{where}: {key} holds the label {label_text(lo if lo < INT64.min else hi)}, too large to be a class label (labels must "
            "fit a 64-bit integer); store the labels as integers 0..K-1 or as class names"
        )


def _classes(y: np.ndarray, yt: np.ndarray | None, declared: list[str] | None, where: str):
    """Labels as indices 0..K-1, the K class names, and the original values if renumbered."""
    named = y.dtype == object
    if yt is not None and (yt.dtype == object) != named:
        raise KcnnError(
            f"{where}: y_train and y_test disagree: one holds class names, the other numbers; "
            "use the same kind of label in both"
        )
    values = np.unique(y)
    if len(values) > defaults.MAX_CLASSES:
        raise KcnnError(
            f"{where}: y_train holds {len(values):,} distinct labels, over the limit of "
            f"{defaults.MAX_CLASSES:,} classes (MAX_CLASSES in kcnn/defaults.py); are they labels?"
        )
    if len(values) < 2:
        raise KcnnError(
            f"{where}: y_train holds a single class ({values[0]}); a classifier needs images of at "
            "least two classes"
        )
    if yt is not None:
        unseen = np.setdiff1d(np.unique(yt), values)
        if len(unseen):
            negative = not named and unseen.min() < 0
            shown = ", ".join(str(v) for v in unseen[:5]) + (", ..." if len(unseen) > 5 else "")
            raise KcnnError(
                f"{where}: y_test holds {'negative labels' if negative else 'labels'} {shown} that "
                "y_train never has; a model cannot learn a class it never sees in training"
            )
    if named:
        names = [str(v) for v in values]
        index = {n: i for i, n in enumerate(names)}

        def renumber(a):
            return np.array([index[v] for v in a], dtype=np.int64)

        return renumber(y), (renumber(yt) if yt is not None else None), names, None
    if declared is not None:
        # the source names its classes: labels index them, whatever subset of them is present
        if values[0] < 0 or values[-1] >= len(declared):
            raise KcnnError(
                f"{where}: labels range over {values[0]}..{values[-1]} but the data set has "
                f"{len(declared)} classes; labels must be 0..{len(declared) - 1}"
            )
        return y, yt, list(declared), None
    if values[0] == 0 and values[-1] == len(values) - 1:
        return y, yt, [str(v) for v in values], None

    # labels such as {3, 7, 100}: three classes, not 101 — number them 0..K-1 in order
    def renumber(a):
        return np.searchsorted(values, a).astype(np.int64)

    original = [int(v) for v in values]
    return (
        renumber(y),
        (renumber(yt) if yt is not None else None),
        [str(v) for v in original],
        original,
    )
