"""Where an image folder's decoded images are kept between reads: `--cache auto|memory|disk|none`.

An image decoded at the model's size (96×96×3 is 27 KB; the 12-megapixel JPEG it came from is
megabytes, and most of the work of reading it) is worth keeping for the next epoch:

- `memory`: in this process's memory, filled as images are first read;
- `disk`: in a file in the cache folder (`$KCNN_CACHE_DIR`, else `~/.cache/kcnn`, under images/),
  named by a digest of the folder's files' content, the size and mode they are decoded at and
  the decoder (so a changed file, size or decoder never reads a stale image). The next run on
  the same folder, and `predict`, `inspect`, `calibrate` and `export`, which rebuild a run's
  splits, read it instead of decoding. Rows are read and written with pread/pwrite, so a big
  cache lives in the system's page cache (given back under pressure), never in the process's
  resident memory. Which rows hold an image is kept in a bitmap beside it, written (under a
  lock, merged with what other processes wrote) only after the rows it claims are synced to disk;
- `none`: every image decoded every time it is read;
- `auto` (the default): memory when the decoded images take at most
  `defaults.IMAGE_CACHE_MEMORY_MAX_BYTES`, else disk when they fit half the cache folder's free
  space, else none.

Registered data sets and .npz files are arrays in memory already: the setting does not apply.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np

from kcnn import defaults
from kcnn.errors import KcnnError

CHOICES = defaults.IMAGE_CACHE_CHOICES
ENV = "KCNN_CACHE_DIR"
FLUSH_ROWS = 2048  # rows written between syncs of a disk cache (and at the latest FLUSH_SECONDS)
FLUSH_SECONDS = 10.0


def cache_root() -> Path:
    """The cache folder: $KCNN_CACHE_DIR, else $XDG_CACHE_HOME/kcnn, else ~/.cache/kcnn."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "kcnn"


class NoCache:
    kind = "none"

    def get(self, index: int) -> np.ndarray | None:
        return None

    def put(self, index: int, pixels: np.ndarray) -> None:
        pass

    def flush(self) -> None:
        pass


class MemoryCache(NoCache):
    """Decoded images in an array of this process, allocated when the first one is kept (the
    system gives its pages as they are written)."""

    kind = "memory"

    def __init__(self, count: int, shape: tuple[int, int, int]):
        self.count, self.shape = count, tuple(shape)
        self._pixels: np.ndarray | None = None
        self._filled = np.zeros(count, dtype=bool)
        self._lock = threading.Lock()

    def get(self, index: int) -> np.ndarray | None:
        return self._pixels[index] if self._filled[index] else None

    def put(self, index: int, pixels: np.ndarray) -> None:
        if self._pixels is None:
            with self._lock:
                if self._pixels is None:
                    self._pixels = np.empty((self.count, *self.shape), dtype=np.uint8)
        self._pixels[index] = pixels
        self._filled[index] = True


class DiskCache(NoCache):
    """Decoded images in a file of the cache folder (see the module docstring)."""

    kind = "disk"

    def __init__(self, base: Path, count: int, shape: tuple[int, int, int], about: dict):
        self.shape = tuple(shape)
        self.row_bytes = int(np.prod(shape))
        self.count = count
        self.path = base.with_suffix(".pixels")
        self._bitmap = base.with_suffix(".filled")
        try:
            base.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
            if os.fstat(self._fd).st_size != count * self.row_bytes:
                os.ftruncate(self._fd, count * self.row_bytes)
                self._write_bitmap(np.zeros(count, dtype=bool), merge=False)
            about_file = base.with_suffix(".json")
            if not about_file.exists():
                about_file.write_text(json.dumps(about, indent=1))
        except OSError as e:
            raise KcnnError(
                f"--cache disk: cannot write the image cache in {base.parent} "
                f"({e.strerror or e}); set {ENV} to a writable folder, or use --cache memory/none"
            ) from None
        self._filled = self._read_bitmap()
        self._written = np.zeros(count, dtype=bool)  # rows this process wrote, synced or not
        self._pending: list[int] = []
        self._last_flush = time.monotonic()
        self._lock = threading.Lock()

    def _read_bitmap(self) -> np.ndarray:
        try:
            raw = np.frombuffer(self._bitmap.read_bytes(), dtype=np.uint8)
        except OSError:
            raw = np.zeros(0, dtype=np.uint8)
        if len(raw) != self.count:
            return np.zeros(self.count, dtype=bool)
        return raw.astype(bool)

    def _write_bitmap(self, filled: np.ndarray, merge: bool = True) -> None:
        fd = os.open(self._bitmap, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            if merge:
                on_disk = os.pread(fd, self.count, 0)
                if len(on_disk) == self.count:
                    filled = filled | np.frombuffer(on_disk, dtype=np.uint8).astype(bool)
            os.pwrite(fd, filled.astype(np.uint8).tobytes(), 0)
            os.ftruncate(fd, self.count)
        finally:
            os.close(fd)

    def get(self, index: int) -> np.ndarray | None:
        if not (self._filled[index] or self._written[index]):
            return None
        raw = os.pread(self._fd, self.row_bytes, index * self.row_bytes)
        if len(raw) != self.row_bytes:
            return None
        return np.frombuffer(raw, dtype=np.uint8).reshape(self.shape)

    def put(self, index: int, pixels: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(pixels, dtype=np.uint8).reshape(-1))
        offset = index * self.row_bytes
        while data:
            written = os.pwrite(self._fd, data, offset)
            data, offset = data[written:], offset + written
        self._written[index] = True
        with self._lock:
            self._pending.append(index)
            due = len(self._pending) >= FLUSH_ROWS
            due = due or time.monotonic() - self._last_flush > FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        """Sync the rows written since the last flush, then mark them in the bitmap."""
        with self._lock:
            pending, self._pending = self._pending, []
            self._last_flush = time.monotonic()
        if not pending:
            return
        with contextlib.suppress(OSError):
            os.fdatasync(self._fd)
            filled = self._filled.copy()
            filled[pending] = True
            self._write_bitmap(filled)
            self._filled = filled


def key(fingerprint: str, mode: str, size: tuple[int, int]) -> str:
    """The name of a folder's disk cache: its files' content, the form they are decoded at and
    the decoder that decodes them."""
    import PIL

    from kcnn.data.decode import DECODER_VERSION

    text = f"{fingerprint}|{mode}|{size[0]}x{size[1]}|{DECODER_VERSION}|{PIL.__version__}"
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def available_memory() -> int:
    """Bytes of memory the machine has available now (MemAvailable), or its physical memory."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return 8 * 1024**3


def _gb(n: int) -> str:
    return f"{n / 1024**3:.1f} GB" if n >= 1024**3 else f"{n / 1024**2:.0f} MB"


def choose(choice: str, count: int, shape: tuple[int, int, int], fingerprint: str, about: dict):
    """The cache `choice` asks for, for `count` images of `shape` (uint8), and a phrase saying
    where they are kept. `--cache memory` that would not fit and `--cache disk` that cannot be
    written are refused in one line; `auto` picks what fits."""
    size = count * int(np.prod(shape))
    if choice == "none":
        return NoCache(), "none (decoded at every read)"
    if choice == "memory" or (choice == "auto" and size <= defaults.IMAGE_CACHE_MEMORY_MAX_BYTES):
        if choice == "memory" and size > available_memory() // 2:
            raise KcnnError(
                f"--cache memory: the decoded images would take {_gb(size)}, over half the "
                f"{_gb(available_memory())} of memory available; use --cache disk or none"
            )
        return MemoryCache(count, shape), f"memory ({_gb(size)})"
    root = cache_root() / "images"
    free = _free_space(root)
    if choice == "auto" and (free is None or size > free // 2):
        return NoCache(), f"none (the {_gb(size)} of decoded images fit neither memory nor disk)"
    if choice == "disk" and free is not None and size > free:
        raise KcnnError(
            f"--cache disk: the decoded images would take {_gb(size)}, more than the "
            f"{_gb(free)} free in {root}; set {ENV} to a bigger disk, or use --cache none"
        )
    h, w, c = shape
    base = root / key(fingerprint, "RGB" if c == 3 else "L", (w, h))
    return DiskCache(base, count, shape, about), f"disk ({_gb(size)} in {base.parent})"


def _free_space(folder: Path) -> int | None:
    probe = folder
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        return shutil.disk_usage(probe).free
    except OSError:
        return None
