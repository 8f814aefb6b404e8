"""A run's per-image test results (`test_predictions.npz`): for each test image where it came
from, its true class, the class the model predicted and the probability of every class.

Written once, by the trainer's evaluation at the end of every run (train, each form of
compare-apis, each backbone of transfer). It is what pairs two runs image by image
(`kcnn.runs.verdict`): two runs on the same data (their fingerprints equal) whose test images
came from the same positions were tested on the same images.

The file is an .npz archive of plain arrays, compressed (probabilities as float16: three
significant digits, a tenth of the size of a CSV): `index` (int64, the image's position in the
data set's own test split, or in its training images when the test set was held out of them:
`held_out`), `true` and `predicted` (int32), `probabilities` (float16, images × classes), and for
an image folder `files` (each image's file, relative to the folder).

Read as untrusted, like every record: a regular file inside the run folder within a size cap,
loaded without pickles, every array's name, dtype and shape checked from its header before its
data is read (the archive's declared sizes bound what decompression may produce), and its
values checked (labels inside the classes, probabilities finite within 0..1, positions unique).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from kcnn import defaults
from kcnn.runs import arrays as npz
from kcnn.runs.records import Damaged

NAME = "test_predictions.npz"
CAP = 256 * 1024 * 1024  # the file on disk
UNPACKED_MAX = 1024 * 1024 * 1024  # what its arrays may declare in all (10,000 classes × 50,000)
IMAGES_MAX = 10_000_000
PROBABILITIES = np.float16

_REQUIRED = ("index", "true", "predicted", "held_out")
_KINDS = {  # the dtype kinds each array may have, and its dimensions
    "index": ("iu", 1),
    "true": ("iu", 1),
    "predicted": ("iu", 1),
    "probabilities": ("f", 2),
    "files": ("U", 1),
    "held_out": ("b", 0),
}


@dataclass(frozen=True)
class ImageResults:
    """One run's answers on its test images (see the module docstring)."""

    index: np.ndarray
    true: np.ndarray
    predicted: np.ndarray
    probabilities: np.ndarray | None = None
    files: list[str] | None = None
    held_out: bool = False

    @property
    def n(self) -> int:
        return int(self.true.size)

    @property
    def correct(self) -> np.ndarray:
        return self.true == self.predicted

    @classmethod
    def build(
        cls, index, true, probabilities, files: list[str] | None = None, held_out: bool = False
    ) -> ImageResults:
        """From the evaluation's float32 probabilities: the prediction is their argmax (taken
        before they are rounded to float16 for keeping)."""
        probabilities = np.asarray(probabilities, dtype=np.float32)
        kept = probabilities if probabilities.size <= UNPACKED_MAX // 2 else None
        return cls(
            np.asarray(index, dtype=np.int64),
            np.asarray(true, dtype=np.int32),
            np.argmax(probabilities, axis=-1).astype(np.int32),
            None if kept is None else kept.astype(PROBABILITIES),
            list(files) if files is not None else None,
            bool(held_out),
        )

    def to_bytes(self) -> bytes:
        arrays = {
            "index": self.index,
            "true": self.true,
            "predicted": self.predicted,
            "held_out": np.asarray(self.held_out),
        }
        if self.probabilities is not None:
            arrays["probabilities"] = self.probabilities
        if self.files is not None:
            arrays["files"] = np.asarray(self.files, dtype=str)
        return npz.to_bytes(arrays)

    @classmethod
    def from_bytes(cls, data: bytes, where: Path, classes: int | None = None) -> ImageResults:
        """The record in `data`, every part checked (Damaged, naming `where`, if any fails).
        `classes`: how many classes the run has, when its config.json says."""
        arrays = npz.from_bytes(data, where, _KINDS, _REQUIRED, UNPACKED_MAX)
        return _checked(arrays, where, classes)


def _checked(arrays: dict[str, np.ndarray], where: Path, classes: int | None) -> ImageResults:
    index, true, predicted = arrays["index"], arrays["true"], arrays["predicted"]
    n = true.size
    if not 1 <= n <= IMAGES_MAX or index.size != n or predicted.size != n:
        raise Damaged(where, f"holds {index.size}, {n} and {predicted.size} images")
    probabilities, files = arrays.get("probabilities"), arrays.get("files")
    if probabilities is not None:
        if probabilities.shape[0] != n or not 2 <= probabilities.shape[1] <= defaults.MAX_CLASSES:
            raise Damaged(where, f"its probabilities are {probabilities.shape} for {n} images")
        if classes is not None and probabilities.shape[1] != classes:
            raise Damaged(where, f"it has {probabilities.shape[1]} classes, the run {classes}")
        values = probabilities.astype(np.float32)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1.001:
            raise Damaged(where, "a probability is not a number from 0 to 1")
        classes = probabilities.shape[1]
    top = classes if classes is not None else defaults.MAX_CLASSES
    for name, labels in (("true", true), ("predicted", predicted)):
        if labels.min() < 0 or labels.max() >= top:
            raise Damaged(where, f"a {name} class is outside 0..{top - 1}")
    if index.min() < 0 or np.unique(index).size != n:
        raise Damaged(where, "its image positions are not distinct whole numbers ≥ 0")
    if files is not None and files.size != n:
        raise Damaged(where, f"it names {files.size} files for {n} images")
    return ImageResults(
        index.astype(np.int64),
        true.astype(np.int32),
        predicted.astype(np.int32),
        probabilities,
        None if files is None else [str(f) for f in files],
        bool(arrays["held_out"]),
    )
