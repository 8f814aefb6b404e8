"""Whether an image is unlike a run's training images: the two checks `kcnn predict` makes, on
the pixels (kcnn.data.typical, `training_images.json`) and in the model's own features
(kcnn.data.nearest, `training_features.npz`). Each record is read as untrusted through RunFolder;
a damaged one is one warning, never a refusal: the model still answers. `loaded` is a
`kcnn.use.predict.LoadedRun`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from kcnn import progress
from kcnn.runs import folders
from kcnn.runs.records import Damaged
from kcnn.runs.run import RunFolder


def _record(read, what: str):
    """A record read through RunFolder (`read()`), or None: when the run has none, and when it is
    damaged, then with one warning naming what goes unchecked."""
    try:
        return read()
    except FileNotFoundError:
        return None
    except Damaged as e:
        progress.warn(f"{e}: images are not checked against the {what}")
        return None


def read_typical(loaded):
    """The run's record of its training images, if it has a sound one for images of the form
    predict reads (`kcnn.use.predict.LoadedRun.typical`)."""
    typical = _record(RunFolder(loaded.info.folder).typical, "training images")
    if typical is None:
        return None
    return typical if typical.image_shape == tuple(loaded.data_shape) else None


def read_nearest(loaded):
    """The run's features record and the model's feature function
    (`kcnn.use.predict.LoadedRun.nearest`)."""
    if loaded.model is None:
        return None
    check = _record(RunFolder(loaded.info.folder).nearest, "training images' features")
    if check is None:
        return None
    from kcnn.models.penultimate import extractor

    extract = extractor(loaded.model)
    if extract is None:
        return None
    width = int(
        np.prod(extract(loaded.prepare(np.zeros((1, *loaded.data_shape), np.uint8))).shape[1:])
    )
    if width != check.width:
        progress.warn(
            f"{loaded.info.folder / folders.NEAREST} keeps features of width {check.width}, the "
            f"model gives {width}: images are not checked against the training images' features"
        )
        return None
    return check, extract


def distances(loaded, images: np.ndarray) -> list[dict[str, Any] | None]:
    """Each image's distance from the run's training images in pixels and whether it is out
    beyond what PERCENTILE % of them are (`kcnn.data.typical`); None each when the run recorded
    nothing."""
    typical = loaded.typical()
    if typical is None:
        return [None] * len(images)
    return [_far(s, typical.threshold) for s in typical.scores(images)]


def feature_distances(loaded, images: np.ndarray) -> list[dict[str, Any] | None]:
    """Each image's distance from the nearest training image in the model's feature space, and
    whether it is out beyond what the run's validation images are (`kcnn.data.nearest`)."""
    found = loaded.nearest()
    if found is None:
        return [None] * len(images)
    check, _ = found
    return [_far(s, check.threshold) for s in check.scores(loaded.features(images))]


def _far(score: float, threshold: float) -> dict[str, Any]:
    return {"score": float(score), "threshold": threshold, "far": bool(score > threshold)}


def unlike(path: Path, pixels: dict[str, Any] | None, features: dict[str, Any] | None) -> str:
    """The one warning for an image far from the training images, saying by which check."""
    from kcnn.data import nearest, typical

    said = []
    if pixels is not None and pixels["far"]:
        said.append(
            f"looks unlike the run's training images (distance {pixels['score']:.2f}; "
            f"{typical.PERCENTILE:g} % of them are within {pixels['threshold']:.2f})"
        )
    if features is not None and features["far"]:
        whom = "them" if said else "the run's training images"
        said.append(
            f"lies far from {whom} as the model sees them (feature distance "
            f"{features['score']:.2f}; {nearest.PERCENTILE:g} % of the run's validation images "
            f"are within {features['threshold']:.2f})"
        )
    return f"{path} {' and '.join(said)}: its prediction may mean little"
