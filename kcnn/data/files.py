"""An image folder's images as an array that is never all in memory: `FileImages`.

It stands where a NumPy array of uint8 images stands — `len`, `shape`, `dtype`, indexing by an
int, a slice or an array of positions gives decoded pixels — but holds only file names: each
image is decoded from its file (kcnn.data.decode) when something reads it, on a thread pool, at
the mode and size the data is read at, and kept in the cache the run chose
(kcnn.data.image_cache). `take(rows)` is a split of it (still files); `at(...)` the same files
read at another size.

    images = FileImages(scan(Path("photos")))          # each image at the folder's common size
    small = images.at("RGB", (96, 96))                 # ... straight to the model's size
    small[:8]                                          # (8, 96, 96, 3) uint8, decoded now
    pixels, kept = small.read(np.array([5, 2, 9]))     # training's read: bad files skipped

Indexing is strict (a file that fails to decode is a `KcnnError` naming it); `read`, which the
input pipeline calls, skips it, records it in the folder's `Failures` and says which rows it kept.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.data import decode
from kcnn.data.image_cache import NoCache
from kcnn.data.scan import ImageFolder
from kcnn.errors import KcnnError

_COUNT = threading.Lock()


class FileImages:
    """The images of `folder` at `rows` (positions in its file list), read at `mode` ("L" or
    "RGB") and `size` (width, height); see the module docstring."""

    dtype = np.dtype(np.uint8)
    ndim = 4

    def __init__(
        self,
        folder: ImageFolder,
        mode: str | None = None,
        size: tuple[int, int] | None = None,
        rows: np.ndarray | None = None,
        cache: Any = None,
    ):
        native_mode, native_size = folder.form()
        self.folder = folder
        self.mode = mode or native_mode
        self.size = tuple(size or native_size)
        self.rows = np.arange(len(folder), dtype=np.int64) if rows is None else np.asarray(rows)
        self.cache = cache if cache is not None else NoCache()

    @property
    def shape(self) -> tuple[int, int, int, int]:
        width, height = self.size
        return (len(self.rows), height, width, 3 if self.mode == "RGB" else 1)

    @property
    def nbytes(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"FileImages({self.folder.root}, {len(self)} files at {'×'.join(map(str, self.shape[1:]))})"

    @property
    def files(self) -> list[str]:
        return [self.folder.files[r] for r in self.rows]

    @property
    def labels(self) -> np.ndarray:
        return self.folder.labels[self.rows]

    def take(self, positions) -> FileImages:
        """The images at `positions` of these (a split): files still, nothing decoded."""
        return FileImages(self.folder, self.mode, self.size, self.rows[positions], self.cache)

    def at(self, mode: str, size: tuple[int, int], cache: Any = None) -> FileImages:
        """The same files read at another mode and size (with that size's cache)."""
        return FileImages(self.folder, mode, size, self.rows, cache)

    def __getitem__(self, key) -> np.ndarray:
        if isinstance(key, tuple):  # images, then (rows, columns, channels) within them
            first, rest = key[0], key[1:]
            picked = self[first]
            return (
                picked[rest]
                if np.ndim(np.arange(len(self.rows))[first]) == 0
                else picked[(slice(None), *rest)]
            )
        positions = np.arange(len(self.rows))[key]
        if np.ndim(positions) == 0:
            return self.read(np.array([positions]), strict=True)[0][0]
        return self.read(positions, strict=True)[0]

    def __array__(self, dtype=None, copy=None):
        pixels = self[:]
        return pixels if dtype is None else pixels.astype(dtype)

    def kept(self) -> np.ndarray:
        """Which of these images have not failed to decode (so far, in this process)."""
        failures = self.folder.failures
        return np.array([r not in failures for r in self.rows], dtype=bool)

    def read(self, positions, strict: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """(pixels of the readable images at `positions`, in order; which positions they are).
        A file that fails is skipped and recorded (`strict`: a `KcnnError` naming it)."""
        rows = self.rows[np.asarray(positions, dtype=np.int64).reshape(-1)]
        _, height, width, channels = self.shape
        out = np.empty((len(rows), height, width, channels), dtype=np.uint8)
        kept = np.ones(len(rows), dtype=bool)
        failures = self.folder.failures
        waiting = []
        for j, row in enumerate(rows):
            row = int(row)
            if row in failures:
                kept[j] = False
                if strict:
                    self._refuse(row, failures.reasons[row])
                continue
            cached = self.cache.get(row)
            if cached is not None:
                out[j] = cached
            else:
                waiting.append((j, row, self._decode_later(row)))
        for j, row, future in waiting:
            try:
                pixels = future.result()
            except decode.ImageError as e:
                if strict:
                    self._refuse(row, str(e))
                failures.add(row, str(e))
                kept[j] = False
                continue
            out[j] = pixels
            self.cache.put(row, pixels)
        with _COUNT:
            self.folder.decoded += len(waiting)
        return (out if kept.all() else out[kept]), kept

    def _decode_later(self, row: int):
        return decode.pool().submit(decode.decode, self.folder.files[row], self.mode, self.size)

    def _refuse(self, row: int, reason: str):
        raise KcnnError(
            f"{self.folder.files[row]} cannot be read as an image ({reason}); remove or replace it"
        )

    def shrunk(self, shrink, most: int, chunk: int = 256) -> np.ndarray:
        """`shrink(pixels)` (kcnn.data.typical's grid rows) of at most `most` of these images,
        evenly spaced, read a chunk at a time: a bounded matrix whatever the folder's size.
        Images that fail to decode are left out."""
        picked = evenly(len(self), most)
        parts = []
        for start in range(0, len(picked), chunk):
            pixels, _ = self.read(picked[start : start + chunk])
            if len(pixels):
                parts.append(shrink(pixels).astype(np.float16))
        return np.concatenate(parts) if parts else np.zeros((0, 0), dtype=np.float16)


def is_files(x) -> bool:
    return isinstance(x, FileImages)


def evenly(count: int, most: int) -> np.ndarray:
    """At most `most` positions spread evenly over `count` rows, in order."""
    if count <= most:
        return np.arange(count)
    return np.unique(np.linspace(0, count - 1, most).round().astype(np.int64))


def take(x, rows):
    """Rows of a split source: `x[rows]` for an array in memory (a copy, as NumPy takes it); a
    split still on disk for `FileImages` and `DiskRows` (an array read from its file)."""
    return x[rows] if isinstance(x, np.ndarray) else x.take(rows)


def kept_labels(x, y: np.ndarray) -> np.ndarray:
    """The labels of the images a pass over `x` actually gave (those of files that failed to
    decode left out); `y` itself for arrays."""
    return y[x.kept()] if isinstance(x, FileImages) else y


def summary_line(x: FileImages, test: FileImages | None, cache_note: str) -> str:
    """The one line saying what an image folder became: how many images in how many classes,
    their native form, what they are decoded at, and where they are cached."""
    folder = x.folder
    count = len(folder) + (len(test.folder) if test is not None else 0)
    split = f" (train/ {len(folder):,}, test/ {len(test.folder):,})" if test is not None else ""
    _, height, width, channels = x.shape
    target = f"{width}×{height} {'RGB' if channels == 3 else 'greyscale'}"
    return (
        f"image folder {Path(folder.root)}: {count:,} images in {len(folder.classes)} classes"
        f"{split}, {folder.describe()}; decoded as {target} when a batch needs them "
        f"(cache: {cache_note})"
    )


def left_out_line(folders: list[ImageFolder]) -> str | None:
    """One note for the files left out of image folders (not images, links out, FIFOs, bad
    headers), naming the first few; None when there are none."""
    left = [(p, why) for f in folders for p, why in (*f.left_out, *f.unreadable)]
    if not left:
        return None
    shown = "; ".join(f"{p} ({why})" for p, why in left[:3])
    more = f"; and {len(left) - 3} more" if len(left) > 3 else ""
    return f"note: left out {len(left)} file(s) that are not readable images: {shown}{more}"
