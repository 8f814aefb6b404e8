"""One image file to uint8 pixels of a stated mode and size: the decoder every image file goes
through, in training (kcnn.data.files) and in `kcnn predict` alike, so a model sees a file the
same way in both.

- JPEG is decoded in the DCT domain at 1/2, 1/4 or 1/8 of its size when that still covers the
  target (Pillow's `Image.draft`, libjpeg's scaled decoding: a 12-megapixel photo bound for
  224×224 decodes at 1/8; what that saves is measured in benchmarks/RESULTS.md), then resized
  exactly;
- the EXIF orientation tag is applied (phones store photos sideways and rotate them by the tag);
- CMYK, palette, greyscale with or without alpha and 16-bit images become "L" or "RGB": a 16-bit
  grey keeps its scale (value / 257, so 65535 is 255) where Pillow's own conversion would clip
  everything above 255 to white; alpha is dropped;
- Pillow's decompression-bomb guard is kcnn's pixel limit with its warning an error, and the file
  is opened only if it is a regular file (`open_file`: a FIFO is never waited on).

Any failure is an `ImageError` carrying a one-line reason; callers decide whether a bad file is a
refusal (predict) or a skipped image (training).
"""

from __future__ import annotations

import os
import stat
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from kcnn import defaults

# Bumped whenever what `decode` returns for a file changes: it keys the image caches.
DECODER_VERSION = 1
SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")
WIDE_GREY = (*SIXTEEN_BIT, "I", "F")


class ImageError(Exception):
    """A file that could not be decoded as an image; str() is the reason, in words."""


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def open_file(path: str | Path):
    """`path` opened for binary reading only if it is a regular file: opened non-blocking and
    checked on its descriptor, so a FIFO is never waited on and nothing can be swapped in between
    the check and the read. `ImageError` (the reason, without the path) otherwise."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as e:
        raise ImageError(f"not readable ({e.strerror or e})") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise ImageError(
            f"{_KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not an image file"
        )
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


_POOL: ThreadPoolExecutor | None = None
_POOL_LOCK = threading.Lock()


def threads() -> int:
    """Threads that decode (and scan) images: the cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def pool() -> ThreadPoolExecutor:
    """The one thread pool decoding images for this process (Pillow releases the GIL while it
    decodes and resizes, so threads use every core)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(threads(), thread_name_prefix="kcnn-decode")
        return _POOL


def _pillow():
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = defaults.MAX_IMAGE_PIXELS
    return Image


def bomb_reason(size: tuple[int, int] | None) -> str:
    shown = f"{size[0]}×{size[1]} = {size[0] * size[1]:,} pixels, " if size else ""
    return (
        f"too large an image ({shown}over the limit of {defaults.MAX_IMAGE_PIXELS:,} pixels, "
        "MAX_IMAGE_PIXELS in kcnn/defaults.py)"
    )


def decode(path: str | Path, mode: str, size: tuple[int, int]) -> np.ndarray:
    """The image in `path` as uint8 (height, width, channels) in Pillow `mode` ("L" or "RGB") at
    `size` (width, height); `ImageError` when it cannot be."""
    from PIL import UnidentifiedImageError

    Image = _pillow()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with open_file(path) as f, Image.open(f) as im:
                pixels = decoded(im, mode, size)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(bomb_reason(None)) from None
    except UnidentifiedImageError:
        raise ImageError("not an image Pillow can decode") from None
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001  (a damaged file can make a decoder raise anything)
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ImageError(reason[:200]) from None
    return pixels


def _draft(im, size: tuple[int, int]) -> None:
    """Ask the JPEG decoder for the smallest DCT scale (1/2, 1/4, 1/8) still at least `size`,
    in the file's stored orientation (a sideways photo's width is its shown height)."""
    if im.format not in ("JPEG", "MPO"):
        return
    width, height = size
    if _orientation(im) in (5, 6, 7, 8):
        width, height = height, width
    im.draft(None, (width, height))


def _orientation(im) -> int:
    try:
        return int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001  (a damaged EXIF block: shown as stored)
        return 1


def decoded(im, mode: str, size: tuple[int, int]) -> np.ndarray:
    """An opened Pillow image (not yet loaded) as uint8 (height, width, channels)."""
    from PIL import ImageOps

    Image = _pillow()
    _draft(im, size)
    im.load()
    try:
        im = ImageOps.exif_transpose(im)
    except Exception:  # noqa: BLE001  (a damaged EXIF block: the image as stored)
        pass
    if im.mode in WIDE_GREY:
        im = Image.fromarray(_wide_grey(np.asarray(im), im.mode), "L")
    elif im.mode == "P" and "transparency" in im.info:
        im = im.convert("RGBA")  # Pillow warns converting such a palette straight to RGB
    im = im.convert(mode)
    if im.size != tuple(size):
        im = im.resize(tuple(size), Image.Resampling.BILINEAR)
    pixels = np.asarray(im, dtype=np.uint8)
    return pixels if pixels.ndim == 3 else pixels[..., None]


def _wide_grey(a: np.ndarray, mode: str) -> np.ndarray:
    """16-bit greys scaled to 8 bits (v / 257: the full 16-bit range onto 0..255); 32-bit integer
    greys the same way when they hold 16-bit values (PNG's I mode), else clipped; float greys
    as 0..1 when they lie in it, else clipped to 0..255."""
    a = a.astype(np.float64)
    if mode == "F":
        finite = a[np.isfinite(a)]
        scale = 255.0 if finite.size and finite.min() >= 0 and finite.max() <= 1 else 1.0
        a = np.nan_to_num(a, nan=0.0) * scale
    elif mode in SIXTEEN_BIT or (a.size and a.min() >= 0 and a.max() <= 65535 and a.max() > 255):
        a = a / 257.0
    return np.clip(np.rint(a), 0, 255).astype(np.uint8)
