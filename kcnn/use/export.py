"""Exporting a run's model for serving (TF SavedModel) or devices (TFLite), each checked.

An export is trusted only after it has been reloaded from disk and run on a test batch: its
predictions must match the run's own model within `TOLERANCE` and pick the same classes. The
outcome is recorded in RUN/export.json.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from kcnn.errors import KcnnError
from kcnn.runs.records import read_json, write_json
from kcnn.use.predict import LoadedRun

FORMATS = ("saved-model", "tflite")
EXPORT_JSON = "export.json"
TOLERANCE = 1e-4  # max abs difference of class probabilities: float32 noise, nothing more
CHECK_IMAGES = 16

Predict = Callable[[np.ndarray], np.ndarray]


@dataclass
class Check:
    images: int
    source: str  # where the batch came from
    max_abs_diff: float
    argmax_agreement: float  # fraction of images whose predicted class is the same
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement == 1.0

    def message(self) -> str:
        verdict = "matches" if self.ok else "DIFFERS from"
        return (
            f"{verdict} the run's model on {self.images} {self.source}: max abs diff "
            f"{self.max_abs_diff:.2e} (tolerance {self.tolerance:.0e}), same class for "
            f"{self.argmax_agreement:.0%} of images"
        )


def check(
    reference: Predict, exported: Predict, batch: np.ndarray, source: str, tolerance=TOLERANCE
) -> Check:
    """Compare two predict functions (model input batch -> probabilities) on one batch."""
    a, b = np.asarray(reference(batch)), np.asarray(exported(batch))
    if a.shape != b.shape:
        return Check(len(batch), source, float("inf"), 0.0, tolerance)
    same = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return Check(len(batch), source, float(np.max(np.abs(a - b))), same, tolerance)


def check_batch(loaded: LoadedRun) -> tuple[np.ndarray, str]:
    """Model-ready inputs: the run's first test images, or seeded random images if the data is
    not available here."""
    images = loaded.test_images(CHECK_IMAGES)
    source = "test images"
    if images is None or not len(images):
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (CHECK_IMAGES, *loaded.data_shape), dtype=np.uint8)
        source = "random images (the run's data is not available)"
    return np.asarray(loaded.prepare(images), dtype=np.float32), source


def saved_model(loaded: LoadedRun, path: Path) -> Predict:
    """Write a TF SavedModel (endpoint `serve`) and return the reloaded copy's predict."""
    import tensorflow as tf

    loaded.model.export(str(path), format="tf_saved_model", verbose=False)
    reloaded = tf.saved_model.load(str(path))
    return lambda x: reloaded.serve(tf.constant(x)).numpy()


def tflite(loaded: LoadedRun, path: Path) -> Predict:
    """Write a float32 .tflite file (converted from a SavedModel) and return its interpreter's
    predict."""
    import tensorflow as tf

    with tempfile.TemporaryDirectory() as tmp:
        loaded.model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        path.write_bytes(converter.convert())
    return lite_predict(path)


def lite_predict(path: Path) -> Predict:
    import warnings

    import tensorflow as tf

    with warnings.catch_warnings():  # "deprecated, use ai_edge_litert": not installed here
        warnings.simplefilter("ignore")
        interpreter = tf.lite.Interpreter(model_path=str(path))

    def run(x: np.ndarray) -> np.ndarray:
        (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
        interpreter.resize_tensor_input(inp["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], x.astype(np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(out["index"]).copy()

    return run


def check_format(fmt: str) -> str:
    if fmt not in FORMATS:
        raise KcnnError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    return fmt


def export(loaded: LoadedRun, fmt: str, out: Path | None = None) -> dict:
    """Export, reload, check; record in RUN/export.json. Returns the record of this export."""
    import logging
    import os

    check_format(fmt)
    folder = loaded.info.folder
    target = Path(out) if out is not None else folder / "export"
    target.mkdir(parents=True, exist_ok=True)
    path = target / ("saved_model" if fmt == "saved-model" else "model.tflite")
    if path.is_dir():
        shutil.rmtree(path)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    logging.getLogger("absl").setLevel(logging.ERROR)
    exported = (saved_model if fmt == "saved-model" else tflite)(loaded, path)
    batch, source = check_batch(loaded)
    result = check(lambda x: np.asarray(loaded.model(x, training=False)), exported, batch, source)
    record = {"format": fmt, "path": str(path), **asdict(result), "ok": result.ok}
    try:
        previous = read_json(folder / EXPORT_JSON)
    except (OSError, ValueError):
        previous = {}
    exports = {**(previous.get("exports") or {}), fmt: record}
    write_json(folder / EXPORT_JSON, {"exports": exports})
    record["message"] = result.message()
    return record
