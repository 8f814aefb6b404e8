"""An image folder scanned, never decoded: its class folders, its image files with their labels,
each file's header (size, colour, EXIF orientation) and a digest of its content.

    folder = scan(Path("photos"))      # one subfolder of images per class
    folder.files, folder.labels, folder.classes, folder.fingerprint

What the scan leaves out, and says so (`left_out`, `unreadable`):

- files that are not images by their name (notes.txt, Thumbs.db), hidden entries;
- anything that is not a regular file — a FIFO, a socket, a device, a folder inside a class
  folder — which is never opened (`os.scandir` tells its kind without opening it, and a file is
  opened non-blocking and checked on its descriptor: a FIFO swapped in later is not waited on);
- links that lead out of the folder: nothing is read through them;
- files whose header Pillow cannot read, or which claim more than MAX_IMAGE_PIXELS pixels.

Unreadable files count against `defaults.BAD_IMAGES_MAX_SHARE`: past that share of the folder's
image files the folder is refused in one line, naming the first of them. Headers and digests are
read on a thread pool (the reads and the hashing release the GIL), a folder of thousands of
photos in seconds; only a file's content is hashed, so the fingerprint holds no pixel in memory.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
import warnings
from collections import Counter
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from kcnn import defaults, progress
from kcnn.data import decode
from kcnn.errors import KcnnError

GREY_MODES = ("1", "L", "LA", "I;16", "I;16B", "I;16L", "I", "F")  # Pillow modes without colour
EXIF_FORMATS = ("JPEG", "MPO", "TIFF", "WEBP")  # their EXIF is in the header: no decode to read it
CHUNK = 1 << 20  # bytes hashed at a time


@dataclass(frozen=True)
class Header:
    """What a file's header says: its format and mode, its size as shown (after the EXIF
    orientation), the orientation tag, and the digest of its whole content."""

    format: str
    mode: str
    size: tuple[int, int]  # (width, height) as shown
    orientation: int
    digest: bytes

    @property
    def colour(self) -> bool:
        return self.mode not in GREY_MODES


@dataclass
class ImageFolder:
    """The readable image files of a class-per-subfolder folder, in the order kcnn reads them
    (classes sorted, files sorted within each): file i has label `labels[i]`."""

    root: Path
    classes: list[str]
    files: list[str]  # the paths as listed (root/class/name)
    labels: np.ndarray  # int64, index into classes
    headers: list[Header]
    left_out: list[tuple[str, str]] = field(default_factory=list)  # (path, why): not images
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why): bad images
    decoded: int = 0  # files this process decoded (reads from a cache not counted)

    def __len__(self) -> int:
        return len(self.files)

    @cached_property
    def failures(self) -> Failures:
        """The files of this folder that failed to decode in this process (shared by every
        split and size it is read at)."""
        return Failures(self)

    def form(self) -> tuple[str, tuple[int, int]]:
        """The mode and size this folder's images are read at by default (`common_form`)."""
        return common_form([(h.colour, h.size) for h in self.headers])

    def describe(self) -> str:
        """How the folder's native images vary, in words (for the summary line)."""
        sizes = Counter(h.size for h in self.headers)
        colours = {h.colour for h in self.headers}
        (w, h), _ = sizes.most_common(1)[0]
        what = f"{w}×{h}" if len(sizes) == 1 else f"{len(sizes)} sizes, mostly {w}×{h}"
        kind = "colour" if colours == {True} else "greyscale" if colours == {False} else "mixed"
        rotated = sum(1 for h in self.headers if h.orientation not in (0, 1))
        turned = f", {rotated} turned upright by their EXIF tag" if rotated else ""
        return f"{what} {kind}{turned}"

    @cached_property
    def fingerprint(self) -> str:
        """A digest of the classes, each file's name within the folder, label and content."""
        return self.fingerprint_with({})

    def fingerprint_with(self, contents: dict[str, bytes]) -> str:
        """The fingerprint with the content digests of some files (by path) replaced: what it
        was before files a run skipped as undecodable were fixed."""
        digest = hashlib.blake2b(digest_size=16)
        digest.update(repr(self.classes).encode())
        for path, label, header in zip(self.files, self.labels, self.headers, strict=True):
            digest.update(os.path.relpath(path, self.root).encode("utf-8", "surrogateescape"))
            digest.update(b"\0%d\0" % int(label))
            digest.update(contents.get(path, header.digest))
        return digest.hexdigest()


class Failures:
    """Image files that passed the scan but failed to decode: each is skipped from then on,
    counted, named once on stderr, and listed in the run's records (`records`). Past
    BAD_IMAGES_MAX_SHARE of the folder's image files (those unreadable at the scan included)
    `over` turns true, and the trainer stops the run (exit 2, resumable)."""

    def __init__(self, folder: ImageFolder):
        self.folder = folder
        self.reasons: dict[int, str] = {}
        self._lock = threading.Lock()

    def __contains__(self, index: int) -> bool:
        return index in self.reasons

    def add(self, index: int, reason: str) -> None:

        with self._lock:
            if index in self.reasons:
                return
            self.reasons[index] = reason
            count = len(self.reasons)
        progress.warn(
            f"skipped {self.folder.files[index]}: it cannot be decoded ({reason}); "
            f"{count} image(s) of {self.folder.root} skipped so far"
        )

    @property
    def total(self) -> int:
        return len(self.folder.files) + len(self.folder.unreadable)

    @property
    def over(self) -> bool:
        bad = len(self.reasons) + len(self.folder.unreadable)
        return bool(self.reasons) and bad > defaults.BAD_IMAGES_MAX_SHARE * self.total

    def records(self) -> list[dict[str, str]]:
        """Every file left out as unreadable, at the scan or while decoding."""
        found = [{"file": p, "reason": why, "when": "scan"} for p, why in self.folder.unreadable]
        with self._lock:
            decoded = sorted(self.reasons.items())
        return found + [
            {
                "file": self.folder.files[i],
                "reason": why,
                "when": "decode",
                "content": self.folder.headers[i].digest.hex(),
            }
            for i, why in decoded
        ]

    def carry(self, records: list) -> None:
        """Skip again, without a word, the files a resumed run skipped, where they are unchanged
        (so it sees the batches the run saw); a file fixed since is read."""
        index = {path: i for i, path in enumerate(self.folder.files)}
        for record in records:
            i = index.get(record.get("file")) if isinstance(record, dict) else None
            if i is not None and record.get("content") == self.folder.headers[i].digest.hex():
                with self._lock:
                    self.reasons.setdefault(i, str(record.get("reason", "skipped before"))[:200])

    def stop_message(self) -> str:
        with self._lock:
            index, why = next(iter(self.reasons.items()))
            count = len(self.reasons) + len(self.folder.unreadable)
        return (
            f"{count} of the {self.total:,} image files in {self.folder.root} cannot be decoded, "
            f"over the {defaults.BAD_IMAGES_MAX_SHARE:.0%} kcnn skips (BAD_IMAGES_MAX_SHARE in "
            f"kcnn/defaults.py): {self.folder.files[index]}: {why}"
        )


def common_form(headers: list[tuple[bool, tuple[int, int]]]) -> tuple[str, tuple[int, int]]:
    """The one mode and size a folder's images are decoded to: colour ("RGB") if any image is in
    colour (greyscale copies into three channels without loss; colour does not survive one),
    else greyscale ("L"); the most common size (ties: the larger), so the fewest are resized."""
    mode = "RGB" if any(colour for colour, _ in headers) else "L"
    counts = Counter(size for _, size in headers)
    size = max(counts, key=lambda s: (counts[s], s[0] * s[1]))
    return mode, size


def image_suffixes() -> set[str]:
    from PIL import Image

    return set(Image.registered_extensions())


_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
    stat.S_IFDIR: "a folder",
}


def _entries(folder: Path) -> list[os.DirEntry]:
    """The visible entries of a folder, sorted by name; a folder that cannot be listed is an
    error."""
    try:
        with os.scandir(folder) as it:
            return sorted((e for e in it if not e.name.startswith(".")), key=lambda e: e.name)
    except NotADirectoryError:
        raise KcnnError(f"{folder} is not a folder") from None
    except OSError as e:
        raise KcnnError(f"cannot list {folder}: {e.strerror or e}") from None


def _inside(path: str, root: str) -> bool:
    """Whether a link at `path` leads to something inside the folder `root` (resolved)."""
    try:
        target = os.path.realpath(path, strict=True)
    except (OSError, RuntimeError):  # dangling or looping
        return False
    return target == root or target.startswith(root.rstrip(os.sep) + os.sep)


def _kind(entry: os.DirEntry) -> int:
    """The file type of what an entry is (through a link), without opening it."""
    try:
        return stat.S_IFMT(entry.stat(follow_symlinks=True).st_mode)
    except OSError:
        return 0


def _class_folders(root: Path, real_root: str, left_out: list) -> list[os.DirEntry]:
    folders = []
    for entry in _entries(root):
        if _kind(entry) != stat.S_IFDIR:
            continue
        if entry.is_symlink() and not _inside(entry.path, real_root):
            left_out.append((entry.path, "a link out of the folder"))
            continue
        folders.append(entry)
    if len(folders) < 2:
        raise KcnnError(
            f"{root} should hold one subfolder of images per class (at least two); found "
            f"{len(folders)}"
        )
    if len(folders) > defaults.MAX_CLASSES:
        raise KcnnError(
            f"{root} holds {len(folders):,} class folders, over the limit of "
            f"{defaults.MAX_CLASSES:,} (MAX_CLASSES in kcnn/defaults.py); is it the right folder?"
        )
    return folders


def _candidates(folder: os.DirEntry, real_root: str, suffixes: set[str], left_out: list):
    """A class folder's image files by name; everything else is left out, with why."""
    found = []
    for entry in _entries(Path(folder.path)):
        kind = _kind(entry)
        if entry.is_symlink() and not _inside(entry.path, real_root):
            left_out.append((entry.path, "a link out of the folder"))
        elif kind != stat.S_IFREG:
            left_out.append((entry.path, _KINDS.get(kind, "not a regular file")))
        elif Path(entry.name).suffix.lower() not in suffixes:
            left_out.append((entry.path, "not an image by its name"))
        else:
            found.append(entry.path)
    if not found:
        raise KcnnError(f"class folder {folder.path} holds no images")
    return found


_GUARD = threading.Lock()  # Pillow's pixel guard is a global: lifted only to say a bomb's size


def _bomb_size(path: str) -> tuple[int, int] | None:
    from PIL import Image

    with _GUARD:
        guard, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
        try:  # Image.open reads only the header: the guard can be off for this
            with decode.open_file(path) as f, Image.open(f) as im:
                return im.size
        except Exception:  # noqa: BLE001 - the size is a detail of the message
            return None
        finally:
            Image.MAX_IMAGE_PIXELS = guard


def read_header(path: str) -> Header:
    """A file's header and content digest; `decode.ImageError` saying why it is not usable."""
    from PIL import Image, UnidentifiedImageError

    Image.MAX_IMAGE_PIXELS = defaults.MAX_IMAGE_PIXELS
    try:
        with decode.open_file(path) as f:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                with Image.open(f) as im:
                    fmt, mode, (w, h) = im.format or "?", im.mode, im.size
                    orientation = _orientation(im) if fmt in EXIF_FORMATS else 1
            f.seek(0)
            digest = hashlib.blake2b(digest_size=16)
            while chunk := f.read(CHUNK):
                digest.update(chunk)
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise decode.ImageError(decode.bomb_reason(_bomb_size(path))) from None
    except UnidentifiedImageError:
        raise decode.ImageError("not an image (its header is not one Pillow reads)") from None
    except decode.ImageError:
        raise
    except Exception as e:  # noqa: BLE001  (a damaged header can make a plugin raise anything)
        raise decode.ImageError((str(e).strip() or type(e).__name__)[:200]) from None
    if w < 1 or h < 1:
        raise decode.ImageError(f"a zero-sized image ({w}×{h})")
    shown = (h, w) if orientation in (5, 6, 7, 8) else (w, h)
    return Header(fmt, mode, shown, orientation, digest.digest())


def _orientation(im) -> int:
    try:
        value = int(im.getexif().get(0x0112, 1) or 1)
    except Exception:  # noqa: BLE001  (a damaged EXIF block: shown as stored)
        return 1
    return value if 1 <= value <= 8 else 1


def _headers(paths: list[str]) -> list[Header | decode.ImageError]:
    def one(path: str):
        try:
            return read_header(path)
        except decode.ImageError as e:
            return e

    if len(paths) < 16:
        return [one(p) for p in paths]
    return list(decode.pool().map(one, paths))


def scan(root: Path) -> ImageFolder:
    """Scan a class-per-subfolder image folder (see the module docstring); `KcnnError` when it
    is not one, or when too many of its image files are unreadable."""
    real_root = os.path.realpath(root)
    left_out: list[tuple[str, str]] = []
    suffixes = image_suffixes()
    folders = _class_folders(root, real_root, left_out)
    listed = [
        (i, p) for i, f in enumerate(folders) for p in _candidates(f, real_root, suffixes, left_out)
    ]
    headers = _headers([p for _, p in listed])
    files, labels, kept, unreadable = [], [], [], []
    for (label, path), header in zip(listed, headers, strict=True):
        if isinstance(header, decode.ImageError):
            unreadable.append((path, str(header)))
            continue
        files.append(path)
        labels.append(label)
        kept.append(header)
    _check_unreadable(root, len(listed), unreadable)
    classes = [f.name for f in folders]
    present = set(labels)
    empty = [c for i, c in enumerate(classes) if i not in present]
    if empty:
        raise KcnnError(
            f"class folder {root / empty[0]} holds no readable images "
            f"({next(why for p, why in unreadable if Path(p).parent.name == empty[0])}); fix or "
            "remove its files"
        )
    return ImageFolder(
        root, classes, files, np.asarray(labels, dtype=np.int64), kept, left_out, unreadable
    )


def _check_unreadable(root: Path, total: int, unreadable: list[tuple[str, str]]) -> None:
    limit = defaults.BAD_IMAGES_MAX_SHARE
    if unreadable and len(unreadable) > limit * total:
        path, why = unreadable[0]
        more = f" (and {len(unreadable) - 1} more)" if len(unreadable) > 1 else ""
        raise KcnnError(
            f"{len(unreadable)} of the {total:,} image files in {root} cannot be read, over the "
            f"{limit:.0%} kcnn skips (BAD_IMAGES_MAX_SHARE in kcnn/defaults.py): {path} is "
            f"{why}{more}; fix or remove them"
        )
