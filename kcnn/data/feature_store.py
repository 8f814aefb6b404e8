"""Cached backbone features kept in a file, read batch by batch: a big cache costs no process memory.

A frozen backbone's features are computed once and read every epoch (kcnn/commands/transfer.py).
Small sets keep them in a NumPy array. Big ones — VGG16 at 224×224 gives 98 KiB an image, 1 GB
for 10,000 images; MobileNetV2 with a Flatten head 245 KiB — would hold that much of the
process's memory for the whole run, which a laptop cannot spare and which the kernel could never
page out. Written to an anonymous file in the run folder instead, they live in the page cache:
as fast to read while memory is free, given back to the system under pressure (and read from disk
again), and gone with the process however it ends (the file has no name).

    store = FeatureStore((4096, 25088), directory=run_dir)
    store.write(0, first_batch); ...; store[np.array([7, 3, 9])]  # rows 7, 3 and 9
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np


class FeatureStore:
    """Rows of float32 features in an unnamed file; `store[indices]` reads those rows, in order.

    It stands in for a NumPy array where the input pipeline reads batches (`len`, `shape`,
    `dtype`, indexing by an array of row numbers)."""

    dtype = np.dtype(np.float32)

    def __init__(self, shape: tuple[int, ...], directory: str | Path | None = None):
        if not shape or shape[0] < 0:
            raise ValueError(f"a feature store needs a row count and a row shape, got {shape}")
        self.shape = tuple(int(n) for n in shape)
        self.row_bytes = int(np.prod(self.shape[1:], dtype=np.int64)) * self.dtype.itemsize
        self._file = tempfile.TemporaryFile(dir=directory, prefix="kcnn-features-")
        self._fd = self._file.fileno()
        os.ftruncate(self._fd, self.shape[0] * self.row_bytes)

    @property
    def nbytes(self) -> int:
        return self.shape[0] * self.row_bytes

    def __len__(self) -> int:
        return self.shape[0]

    def write(self, start: int, rows: np.ndarray) -> None:
        """Store `rows` as rows `start`, `start + 1`, ..."""
        rows = np.ascontiguousarray(rows, dtype=self.dtype)
        if rows.shape[1:] != self.shape[1:] or not 0 <= start <= self.shape[0] - len(rows):
            raise ValueError(
                f"rows of shape {rows.shape} at {start} do not fit a store of shape {self.shape}"
            )
        data, offset = memoryview(rows.reshape(-1).view(np.uint8)), start * self.row_bytes
        while data:  # a write may be short (signals, very large rows)
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written

    def __getitem__(self, indices) -> np.ndarray:
        indices = np.asarray(indices, dtype=np.int64).reshape(-1)
        if indices.size and (indices.min() < 0 or indices.max() >= self.shape[0]):
            raise IndexError(f"row indices must be in 0..{self.shape[0] - 1}")
        out = np.empty((len(indices), *self.shape[1:]), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        for k, i in enumerate(indices):
            row, offset = (
                view[k * self.row_bytes : (k + 1) * self.row_bytes],
                int(i) * self.row_bytes,
            )
            while row:
                n = os.preadv(self._fd, [row], offset)
                if n == 0:
                    raise OSError(f"feature file ended before row {int(i)}")
                row, offset = row[n:], offset + n
        return out

    def truncate(self, rows: int) -> FeatureStore:
        """Keep only the first `rows` rows (a pass that gave fewer than it was sized for)."""
        self.shape = (int(rows), *self.shape[1:])
        os.ftruncate(self._fd, self.shape[0] * self.row_bytes)
        return self

    def close(self) -> None:
        self._file.close()
