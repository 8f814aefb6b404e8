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

from kcnn import defaults
from kcnn.errors import KcnnError


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

    @property
    def classes(self) -> int:
        return self.parts.num_classes

    @functools.cached_property
    def typical(self):
        """What the training images look like (`kcnn.data.typical`), for `kcnn predict` to tell
        an image unlike them; worked out once for every run that trains on this data."""
        from kcnn.data import typical

        return typical.summarise(self.parts.x_train)


def prepare_data(
    config,
    input_shape_for: Callable[[tuple[int, int, int], int], tuple[int, int, int]],
) -> Prepared:
    """The data phase: load and validate the data set, split it, and settle the model input."""
    from kcnn.data import datasets, splits
    from kcnn.data.pipeline import fit_mode

    data = datasets.load(config.dataset, config.data_dir, config.seed, config.shapes_count)
    parts = splits.make_splits(data, config.val_split, config.seed, config.limit, config.test_split)
    input_shape = tuple(int(v) for v in input_shape_for(data.image_shape, parts.num_classes))
    if isinstance(config.batch_size, int):  # `auto` is found later, within memory
        check_batch_memory(config.batch_size, *input_shape)
    fit = fit_mode(data.image_shape[:2], input_shape[:2])
    fingerprint = data_fingerprint(data)
    files = test_files(config.dataset, parts)
    # The splits hold their own copies of the images; past this point the loaded arrays serve
    # only to describe the data (name, source, image shape), so one image of them is kept and a
    # data set sits in memory once, not twice.
    described = dataclasses.replace(
        data, x_train=data.x_train[:1].copy(), y_train=data.y_train[:1].copy()
    )
    if data.x_test is not None:
        described.x_test, described.y_test = data.x_test[:1].copy(), data.y_test[:1].copy()
    return Prepared(described, parts, input_shape, fit, fingerprint, files)


def test_files(dataset: str, parts) -> list[str] | None:
    """The files of an image folder's test images, in the test split's order and relative to
    the folder (None for any other data set, or a listing that no longer matches the images)."""
    from pathlib import Path

    from kcnn.data import datasets

    listing = datasets.folder_files(dataset)
    if listing is None or parts.test_index is None:
        return None
    train, test = listing
    pool = train if parts.test_held_out or test is None else test
    if len(parts.test_index) and int(parts.test_index.max()) >= len(pool):
        return None
    root = Path(dataset).expanduser()
    return [str(Path(pool[i]).relative_to(root)) for i in parts.test_index]


def data_fingerprint(data) -> str:
    """A digest of the images and labels a run trained on: a resume must see the very same data."""
    digest = hashlib.blake2b(digest_size=16)
    for array in (data.x_train, data.y_train, data.x_test, data.y_test):
        if array is None:
            digest.update(b"-")
            continue
        digest.update(str((array.shape, array.dtype.str)).encode())
        digest.update(memoryview(array).cast("B") if array.flags.c_contiguous else array.tobytes())
    return digest.hexdigest()


def check_batch_memory(batch_size: int, height: int, width: int, channels: int) -> None:
    """Refuse a batch whose float32 input alone would not fit, before anything is allocated."""
    size = batch_size * height * width * channels * 4
    if size > defaults.INPUT_BATCH_BYTES_MAX:
        limit = defaults.INPUT_BATCH_BYTES_MAX
        raise KcnnError(
            f"one batch of {batch_size} images of {height}×{width}×{channels} takes "
            f"{size / 1024**3:.1f} GB as float32, over the {limit / 1024**3:.0f} GB limit: "
            "lower --batch-size or --image-size"
        )
