"""The data phase of a run: a data set loaded, validated, split, and settled on the model input.

`prepare_data` is what every training command (and `kcnn run --check`) does before a model is
built; what it hands on (`Prepared`) is all the trainer needs of the data. Its fingerprint lets a
resume refuse data that has changed since the run began.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcnn import progress
from kcnn.data import limits


@dataclass
class Prepared:
    """What the data phase hands on: the data, its splits, and the model input they are fed at."""

    data: Any  # kcnn.data.datasets.Data
    parts: Any  # kcnn.data.splits.Splits
    input_shape: tuple[int, int, int]
    fit: str  # how images reach input_shape: none, pad or resize

    fingerprint: str  # digest of the images and labels (a resume must see the same data)
    # An image folder's test images as files (relative to the folder), listed as it was loaded;
    # None for other data sets. What a run's per-image test results name each image by.
    test_files: list[str] | None = None
    # Test images that are exact copies of training or validation images (`leakage`): what the
    # run records beside its data, and warns of once.
    leakage: dict[str, Any] | None = None

    @property
    def classes(self) -> int:
        return self.parts.num_classes

    @functools.cached_property
    def typical(self):
        """What the training images look like (`kcnn.data.typical`), for `kcnn predict` to tell
        an image unlike them; worked out once for every run that trains on this data (for an
        image folder, from a sample of its training images read in one streaming pass)."""
        from kcnn.data import typical
        from kcnn.data.files import is_files

        x = self.parts.x_train
        if is_files(x):
            if len(x) < typical.MIN_IMAGES:  # too few to say what is typical: nothing to read
                return None
            return typical.summarise_rows(x.shrunk(typical.shrink, typical.SAMPLE), x.shape[1:])
        return typical.summarise(x)

    @property
    def streamed(self) -> bool:
        """Whether the images are files read when a batch needs them (an image folder)."""
        from kcnn.data.files import is_files

        return is_files(self.parts.x_train)

    def skipped(self) -> list[dict[str, str]] | None:
        """The image files left out as unreadable so far (None: the data are arrays)."""
        if not self.streamed:
            return None
        folders = {id(x.folder): x.folder for x in (self.parts.x_train, self.parts.x_test)}
        return [r for f in folders.values() for r in f.failures.records()]

    def decoded(self) -> int | None:
        """Image files this process has decoded so far (None: the data are arrays)."""
        return sum(f.decoded for f in self._folders()) if self.streamed else None

    def failures_over(self) -> str | None:
        """Why the run must stop, when more of its image files failed to decode than kcnn skips."""
        if not self.streamed:
            return None
        folders = {id(x.folder): x.folder for x in (self.parts.x_train, self.parts.x_test)}
        over = [f.failures for f in folders.values() if f.failures.over]
        return over[0].stop_message() if over else None

    def _folders(self):
        return list(
            {id(x.folder): x.folder for x in (self.parts.x_train, self.parts.x_test)}.values()
        )

    def resumes(self, fingerprint: str, skipped) -> bool:
        """Whether a run that trained on data of `fingerprint` and skipped the image files
        `skipped` (its records) may go on with this data: the same data, or the same but for
        files it skipped as undecodable, fixed since. Those still unchanged are skipped again."""
        if not self.streamed or not isinstance(skipped, list):
            return fingerprint == self.fingerprint
        before = {
            r["file"]: bytes.fromhex(r["content"])
            for r in skipped
            if isinstance(r, dict) and isinstance(r.get("file"), str) and _hex(r.get("content"))
        }
        parts = [f.fingerprint_with(before) for f in self._folders()]
        xt = self.data.x_test
        same = _folder_fingerprint(
            parts[0], parts[1] if xt is not None and len(parts) > 1 else None
        )
        if fingerprint not in (self.fingerprint, same):
            return False
        for folder in self._folders():
            folder.failures.carry(skipped)
        return True

    def flush(self) -> None:
        """Write out what the image caches hold (a disk cache syncs as it goes; this is the rest)."""
        if self.streamed:
            for x in (self.parts.x_train, self.parts.x_val, self.parts.x_test):
                x.cache.flush()


def prepare_data(
    config,
    input_shape_for: Callable[[tuple[int, int, int], int], tuple[int, int, int]],
) -> Prepared:
    """The data phase: load and validate the data set, split it, and settle the model input."""
    from kcnn.data import datasets, splits
    from kcnn.data.files import is_files
    from kcnn.data.pipeline import fit_mode

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    # --folds: this run's fold; a whole group (`--check`, `--batch-size auto`) is split as its
    # first fold is, so that a class too small for K folds is refused before anything trains
    folds = getattr(config, "folds", None)
    fold = (config.fold or 1, folds) if folds else None
    parts = splits.make_splits(
        data, config.val_split, config.seed, config.limit, config.test_split, fold
    )
    input_shape = tuple(int(v) for v in input_shape_for(data.image_shape, parts.num_classes))
    if isinstance(config.batch_size, int):  # `auto` is found later, within memory
        limits.check_batch_memory(config.batch_size, *input_shape)
    fit = fit_mode(data.image_shape[:2], input_shape[:2])
    fingerprint = data_fingerprint(data)
    leaked = leakage(parts)
    _warn_of_leakage(leaked, fingerprint)
    if is_files(data.x_train):
        data, parts, note = read_at(data, parts, input_shape, fit, getattr(config, "cache", "auto"))
        _say_what_a_folder_became(data, note)
        return Prepared(
            data, parts, input_shape, fit, fingerprint, test_files(config.dataset, parts), leaked
        )
    # The splits hold their own copies of the images; past this point the loaded arrays serve
    # only to describe the data (name, source, image shape), so one image of them is kept and a
    # data set sits in memory once, not twice.
    described = dataclasses.replace(
        data, x_train=data.x_train[:1].copy(), y_train=data.y_train[:1].copy()
    )
    if data.x_test is not None:
        described.x_test, described.y_test = data.x_test[:1].copy(), data.y_test[:1].copy()
    return Prepared(described, parts, input_shape, fit, fingerprint, leakage=leaked)


def _digests(x) -> list[bytes]:
    """One digest per image of a split: of an image folder's file content (read at the scan:
    no file is opened again, no pixel decoded for it), else of the image's pixels."""
    from kcnn.data.files import is_files
    from kcnn.data.image_hashes import digest

    if is_files(x):
        return [x.folder.headers[r].digest for r in x.rows]
    found = []
    for start in range(0, len(x), 4096):  # a chunk at a time: an array read from disk stays there
        found += [digest(image) for image in np.ascontiguousarray(x[start : start + 4096])]
    return found


def leakage(parts) -> dict[str, Any]:
    """How many test images are exact copies of training or validation images (their pixels,
    or an image folder's file bytes): a test score that partly measures memory, not
    generalisation. `kcnn audit` finds the near copies as well."""
    learned = set(_digests(parts.x_train)) | set(_digests(parts.x_val))
    copies = sum(1 for d in _digests(parts.x_test) if d in learned)
    how = "file content" if getattr(parts.x_train, "folder", None) is not None else "pixels"
    return {"test_images_copied_from_training": copies, "test_images": len(parts.y_test),
            "compared_by": how}  # fmt: skip


_WARNED: set[str] = set()  # data sets warned of in this process (a seed group loads data often)


def _warn_of_leakage(leaked: dict[str, Any], fingerprint: str) -> None:

    copies = leaked["test_images_copied_from_training"]
    if not copies or fingerprint in _WARNED:
        return
    _WARNED.add(fingerprint)
    progress.warn(
        f"{copies:,} of the {leaked['test_images']:,} test images are exact copies of "
        "training or validation images: the test score overstates what the model learned; "
        "see `kcnn audit` (it finds near copies too)"
    )


def test_files(dataset: str, parts) -> list[str] | None:
    """The files of an image folder's test images, in the test split's order and relative to
    the folder (None for any other data set): what a run's per-image test results name each
    image by."""
    return relative_files(dataset, parts.x_test)


def relative_files(dataset: str, images) -> list[str] | None:
    """The files of a split of an image folder, in its order and relative to the folder (None
    for arrays)."""
    import os

    from kcnn.data.files import is_files

    if not is_files(images):
        return None
    root = os.path.expanduser(dataset)
    return [os.path.relpath(f, root) for f in images.files]


def read_at(data, parts, input_shape: tuple[int, int, int], fit: str, cache: str):
    """An image folder's data and splits read at the size the model takes: straight from the
    files to `input_shape` when it shrinks them (a 12-megapixel photo never exists in memory at
    full size), at the folder's own size when it is padded, fits already, or is enlarged (by the
    pipeline, as for arrays: a cache of small images stays small). Returns (data, splits, where
    the cache is, in words)."""
    x = data.x_train
    width, height = x.size
    shrinks = fit == "resize" and input_shape[0] * input_shape[1] < width * height
    size = (input_shape[1], input_shape[0]) if shrinks else x.size
    return read_folder_at(data, parts, x.mode, size, cache)


def read_folder_at(data, parts, mode: str, size: tuple[int, int], cache: str):
    """`data` and `parts` of an image folder read at `mode` and `size` (width, height), each
    folder (train/ and test/ have one each) with the image cache `cache` asks for; also the
    words saying where the training folder's cache is."""
    from kcnn.data import image_cache

    caches, notes = {}, []
    for source in (data.x_train, data.x_test):
        if source is not None and id(source.folder) not in caches:
            shape = (size[1], size[0], 3 if mode == "RGB" else 1)
            about = {
                "folder": str(source.folder.root),
                "images": len(source.folder),
                "shape": shape,
            }
            found, note = image_cache.choose(
                cache, len(source.folder), shape, source.folder.fingerprint, about
            )
            caches[id(source.folder)] = found
            notes.append(note)

    def read(images):
        return None if images is None else images.at(mode, size, caches[id(images.folder)])

    data = dataclasses.replace(data, x_train=read(data.x_train), x_test=read(data.x_test))
    if parts is not None:
        parts = dataclasses.replace(
            parts, x_train=read(parts.x_train), x_val=read(parts.x_val), x_test=read(parts.x_test)
        )
    return data, parts, notes[0]


def _say_what_a_folder_became(data, cache_note: str) -> None:
    """The folder's summary line on stderr, and a note for the files left out: printed only
    once the data is settled, so that a refused folder says one line, its error."""
    import sys

    from kcnn.data.files import left_out_line, summary_line
    from kcnn.text import terminal

    test = data.x_test if data.x_test is not None else None
    print(terminal(summary_line(data.x_train, test, cache_note)), file=sys.stderr)
    folders = [data.x_train.folder] + ([test.folder] if test is not None else [])
    note = left_out_line(folders)
    if note:
        print(terminal(note), file=sys.stderr)


def data_fingerprint(data) -> str:
    """A digest of the images and labels a run trained on: a resume must see the very same data.
    For an image folder, of its files' names, labels and content (read once, at the scan: no
    pixel is held for it), whatever size they are read at."""
    from kcnn.data.files import is_files

    if is_files(data.x_train):
        test = data.x_test.folder.fingerprint if data.x_test is not None else None
        return _folder_fingerprint(data.x_train.folder.fingerprint, test)
    digest = hashlib.blake2b(digest_size=16)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        if array is None:
            digest.update(b"-")
            continue
        digest.update(str((array.shape, array.dtype.str)).encode())
        if not isinstance(array, np.ndarray):  # read from disk by rows: the same bytes, in chunks
            for chunk in array.chunks():
                digest.update(chunk)
            continue
        digest.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return digest.hexdigest()


def _folder_fingerprint(train: str, test: str | None) -> str:
    digest = hashlib.blake2b(b"image folder", digest_size=16)
    for part in (train, test):
        digest.update(part.encode() if part is not None else b"-")
    return digest.hexdigest()


def _hex(value) -> bool:
    try:
        return isinstance(value, str) and len(bytes.fromhex(value)) == 16
    except ValueError:
        return False
