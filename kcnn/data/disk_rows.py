"""An array too big for memory, read from its file a few rows at a time: `DiskRows`.

An .npz saved uncompressed (`np.savez`) holds each array's bytes as they are, at an offset of
the file; so does a raw IDX file. Such an array is read in place: `rows[indices]` reads just
those rows with `os.pread`, so a data set larger than the machine's memory trains with the
memory of a batch; the pages live in the system's page cache, never in the process's resident
memory (a memory map would count them there). A compressed member (`np.savez_compressed`, a
`.gz` IDX file) cannot be read in place; it is unpacked once, a chunk at a time, into an
unnamed file in the cache folder (gone when the process ends), and read from there.

It stands where a NumPy array stands for the input pipeline and the splits (`len`, `shape`,
`dtype`, indexing by an int, a slice or an array of positions; `take(rows)` a split of it).
"""

from __future__ import annotations

import os
import tempfile
from typing import Any

import numpy as np

CHUNK = 16 << 20  # bytes unpacked or hashed at a time


class DiskRows:
    """Rows of a C-ordered array at `offset` of an open file (kept open by `owner`)."""

    def __init__(self, owner: Any, offset: int, shape: tuple[int, ...], dtype, rows=None):
        self.owner = owner  # the open file object: the descriptor lives as long as this does
        self.fd = owner.fileno()
        self.offset = int(offset)
        self.dtype = np.dtype(dtype)
        self.row_shape = tuple(int(d) for d in shape[1:])
        self.row_bytes = int(np.prod(self.row_shape, dtype=np.int64)) * self.dtype.itemsize
        self.count = int(shape[0])
        self.rows = np.arange(self.count, dtype=np.int64) if rows is None else np.asarray(rows)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self.row_shape)

    @property
    def ndim(self) -> int:
        return 1 + len(self.row_shape)

    @property
    def nbytes(self) -> int:
        return len(self.rows) * self.row_bytes

    def __len__(self) -> int:
        return len(self.rows)

    def __repr__(self) -> str:
        return f"DiskRows({self.shape}, {self.dtype}, at byte {self.offset})"

    def with_channel(self) -> DiskRows:
        """(N, H, W) images seen as (N, H, W, 1): the same bytes."""
        view = DiskRows(self.owner, self.offset, (self.count, *self.row_shape, 1), self.dtype)
        view.rows = self.rows
        return view

    def take(self, positions) -> DiskRows:
        view = DiskRows(self.owner, self.offset, (self.count, *self.row_shape), self.dtype)
        view.rows = self.rows[positions]
        return view

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
            return self._read(self.rows[[positions]])[0]
        return self._read(self.rows[positions])

    def __array__(self, dtype=None, copy=None):
        out = self[:]
        return out if dtype is None else out.astype(dtype)

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self.row_shape), dtype=self.dtype)
        view = memoryview(out.reshape(-1).view(np.uint8))
        k = 0
        while k < len(rows):  # runs of consecutive rows are read at once
            j = k + 1
            while j < len(rows) and rows[j] == rows[j - 1] + 1:
                j += 1
            _pread(
                self.fd,
                view[k * self.row_bytes : j * self.row_bytes],
                self.offset + int(rows[k]) * self.row_bytes,
            )
            k = j
        return out

    def chunks(self):
        """The rows' bytes in order, a chunk at a time (for a digest)."""
        step = max(1, CHUNK // max(self.row_bytes, 1))
        for start in range(0, len(self.rows), step):
            yield self[start : start + step].tobytes()


def _pread(fd: int, view: memoryview, offset: int) -> None:
    while view:
        n = os.preadv(fd, [view], offset)
        if n == 0:
            raise OSError("the file ended before the rows it promises")
        view, offset = view[n:], offset + n


def unpacked(stream, nbytes: int, directory) -> Any:
    """`nbytes` read from `stream` (a decompressing reader) into an unnamed file in `directory`,
    a chunk at a time; the open file, positioned anywhere."""
    os.makedirs(directory, exist_ok=True)
    out = tempfile.TemporaryFile(dir=directory, prefix="kcnn-unpacked-")
    left = nbytes
    while left > 0:
        chunk = stream.read(min(CHUNK, left))
        if not chunk:
            raise EOFError(f"the data ended {left:,} bytes before the size its header promises")
        out.write(chunk)
        left -= len(chunk)
    out.flush()
    return out


def zip_member_offset(path, info) -> int:
    """Where a stored (uncompressed) zip member's bytes begin in the file."""
    with open(path, "rb") as f:
        f.seek(info.header_offset)
        local = f.read(30)
        if local[:4] != b"PK\x03\x04":
            raise ValueError("a damaged zip entry")
        name_length = int.from_bytes(local[26:28], "little")
        extra_length = int.from_bytes(local[28:30], "little")
    return info.header_offset + 30 + name_length + extra_length
