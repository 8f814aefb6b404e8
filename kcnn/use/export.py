"""Exporting a run's model for serving (TF SavedModel, ONNX) or devices (TFLite, optionally
quantised), each measured against the run.

An export is trusted only after the file has been reloaded in its own runtime (`runtimes`) and
run on the run's whole test split: its predictions beside the run's model (largest probability
difference, share of identical classes), its test accuracy beside the run's, its size and its
speed (median latency per image at batch 1, throughput at batch 32) are recorded in
RUN/export.json (`kcnn.runs.exports`). A float32 export must match the run's model within
`TOLERANCE`; a quantised one is measured, and `--max-accuracy-drop` bounds what it may cost.
An export that fails its check is not kept.

Writes never follow links: the converter writes into a fresh private folder inside the target
folder, and the result is renamed into place. A target folder or file that is a symbolic link is
refused before anything is written.
"""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from kcnn.errors import KcnnError
from kcnn.progress import steps
from kcnn.runs import exports, folders
from kcnn.use import runtimes
from kcnn.use.predict import LoadedRun, predict_batches

FORMATS = ("saved-model", "tflite", "onnx")
QUANTIZE = ("float16", "dynamic", "int8")
EXPORT_JSON = exports.EXPORT_JSON
TOLERANCE = 1e-4  # max abs difference of class probabilities: float32 noise, nothing more
CHECK_IMAGES = 16  # random images checked when the run's data is not available here
CALIBRATION_IMAGES = 200  # training images int8 quantisation calibrates its ranges on
LATENCY_RUNS = 50  # single-image calls timed for the median latency
THROUGHPUT_BATCH, THROUGHPUT_RUNS = 32, 20  # batch calls timed for the median throughput

Predict = Callable[[np.ndarray], np.ndarray]


class ExportCheckError(KcnnError):
    """The exported model does not predict like the run's, or costs more accuracy than allowed."""

    exit_code = 1


@dataclass(frozen=True)
class Target:
    """One export: its format, its quantisation and where it goes."""

    fmt: str
    quantize: str | None = None
    int8_io: bool = False

    @property
    def key(self) -> str:
        """Its entry in export.json (and in the README's table)."""
        if self.fmt != "tflite" or not self.quantize:
            return self.fmt
        return f"tflite-{self.quantize}" + ("-io" if self.int8_io else "")

    @property
    def filename(self) -> str:
        if self.fmt == "saved-model":
            return "saved_model"
        if self.fmt == "onnx":
            return "model.onnx"
        return "model" + self.key.removeprefix("tflite") + ".tflite"

    @property
    def tolerance(self) -> float | None:
        """Quantised models differ by design: measured, not held to float32 noise."""
        return None if self.quantize else TOLERANCE


def target(fmt: str, quantize: str | None = None, int8_io: bool = False) -> Target:
    """The export asked for, checked before anything is loaded or written."""
    if fmt not in FORMATS:
        raise KcnnError(f"unknown export format '{fmt}': choose one of {', '.join(FORMATS)}")
    if quantize is not None and quantize not in QUANTIZE:
        raise KcnnError(f"unknown --quantize '{quantize}': choose one of {', '.join(QUANTIZE)}")
    if quantize is not None and fmt != "tflite":
        raise KcnnError(f"--quantize is for --format tflite, not {fmt}")
    if int8_io and quantize != "int8":
        raise KcnnError("--int8-io needs --quantize int8 (integer input and output)")
    if fmt == "onnx":
        runtimes.require_onnx(converter=True)
    return Target(fmt, quantize, int8_io)


def check_max_drop(value: float | None) -> float | None:
    if value is not None and not (0.0 <= value <= 1.0):
        raise KcnnError(
            f"--max-accuracy-drop {value}: give a fraction of the test set between 0 and 1 "
            "(0.01 is one percentage point)"
        )
    return value


# --- writing without following links ------------------------------------------------------------


def _link_or_odd(path: Path) -> str | None:
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return None if stat.S_ISDIR(mode) or stat.S_ISREG(mode) else "not a regular file or folder"


def export_folder(run_folder: Path, out: Path | None) -> Path:
    return Path(out) if out is not None else Path(run_folder) / "export"


def check_paths(run_folder: Path, out: Path | None, t: Target) -> Path:
    """Where the export goes (`out`, or RUN/export), refused when that folder, or what the export
    replaces in it, or RUN/export.json is a link (or a FIFO, a device...). Writes nothing."""
    exports.check_writable(run_folder)
    folder = export_folder(run_folder, out)
    for path in (folder, folder / t.filename):
        problem = _link_or_odd(path)
        if problem:
            raise KcnnError(f"{path} is {problem}: kcnn exports only into a real folder it owns")
    final = folder / t.filename
    if final.exists() and final.is_dir() != (t.fmt == "saved-model"):
        raise KcnnError(f"{final} is in the way: remove it, or pass another --out")
    return folder


def prepare_folder(run_folder: Path, out: Path | None, t: Target) -> tuple[Path, list[Path]]:
    """The checked target folder, made if missing, and the folders made for it (`folders.make`:
    a refused export removes them again, so it leaves no empty folder behind)."""
    folder = check_paths(run_folder, out, t)
    try:
        made = folders.make(folder)
    except OSError as e:
        raise KcnnError(f"cannot make {folder}: {e.strerror or e}") from None
    if _link_or_odd(folder):  # made meanwhile by someone else
        raise KcnnError(f"{folder} is a symbolic link: kcnn exports only into a real folder")
    return folder, made


def _put_in_place(fresh: Path, final: Path) -> None:
    """Rename `fresh` to `final` (same folder, so atomic for a file; a SavedModel folder replaces
    the old one by two renames). A link at `final` is replaced, never followed."""
    if fresh.is_dir() and final.is_dir() and not final.is_symlink():
        old = fresh.parent / "old"
        os.rename(final, old)
    os.replace(fresh, final)


def _file_bytes(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(
        os.lstat(os.path.join(root, f)).st_size
        for root, _, files in os.walk(path, followlinks=False)
        for f in files
    )


# --- converters: each writes its file into a fresh folder ---------------------------------------


def _saved_model(loaded: LoadedRun, path: Path) -> None:
    loaded.model.export(str(path), format="tf_saved_model", verbose=False)


def calibration_sample(loaded: LoadedRun) -> np.ndarray:
    """A seeded sample of the run's training images (never validation or test): what int8
    quantisation sets its value ranges from."""
    images = loaded.train_images()
    if images is None or not len(images):
        raise KcnnError(
            f"--quantize int8 calibrates on the run's training images, and its data set "
            f"({loaded.info.dataset}) is not available here"
        )
    rng = np.random.default_rng(int(loaded.info.settings.get("seed") or 0))
    pick = rng.choice(len(images), size=min(CALIBRATION_IMAGES, len(images)), replace=False)
    return images[np.sort(pick)]


def _tflite(loaded: LoadedRun, path: Path, t: Target, calibration: np.ndarray | None) -> None:
    import tensorflow as tf

    with tempfile.TemporaryDirectory(dir=path.parent) as tmp:
        loaded.model.export(tmp, format="tf_saved_model", verbose=False)
        converter = tf.lite.TFLiteConverter.from_saved_model(tmp)
        if t.quantize:
            converter.optimizations = [tf.lite.Optimize.DEFAULT]
        if t.quantize == "float16":
            converter.target_spec.supported_types = [tf.float16]
        if t.quantize == "int8":
            prepared = [np.asarray(loaded.prepare(image[None])) for image in calibration]
            converter.representative_dataset = lambda: ([x] for x in prepared)
            converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
            if t.int8_io:
                converter.inference_input_type = tf.int8
                converter.inference_output_type = tf.int8
        data = converter.convert()
    path.write_bytes(data)


def _onnx(loaded: LoadedRun, path: Path) -> None:
    """Keras's own ONNX export (tf2onnx on the TensorFlow backend), batch size left free."""
    import logging
    import warnings

    import tensorflow as tf

    logging.getLogger("tf2onnx").setLevel(logging.ERROR)
    spec = tf.TensorSpec((None, *loaded.input_shape), tf.float32, name="images")
    with warnings.catch_warnings():  # Keras's patch of tf2onnx for NumPy 2 warns about np.object
        warnings.simplefilter("ignore", FutureWarning)
        loaded.model.export(str(path), format="onnx", verbose=False, input_signature=[spec])


def _write(loaded: LoadedRun, t: Target, path: Path, calibration: np.ndarray | None) -> None:
    try:
        if t.fmt == "saved-model":
            _saved_model(loaded, path)
        elif t.fmt == "onnx":
            _onnx(loaded, path)
        else:
            _tflite(loaded, path, t, calibration)
    except KcnnError:
        raise
    except Exception as e:  # noqa: BLE001  (converters raise anything: name it in one line)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KcnnError(f"{t.key} export of {loaded.info.folder.name} failed: {first}") from None


# --- checking and measuring ---------------------------------------------------------------------


@dataclass
class Check:
    images: int
    source: str  # where the images came from
    max_abs_diff: float
    argmax_agreement: float  # fraction of images whose predicted class is the same
    tolerance: float | None  # None: measured only (a quantised model)

    @property
    def ok(self) -> bool:
        if self.tolerance is None:
            return np.isfinite(self.max_abs_diff)
        return self.max_abs_diff <= self.tolerance and self.argmax_agreement == 1.0

    def message(self) -> str:
        verdict = "matches" if self.ok else "DIFFERS from"
        if self.tolerance is None:
            verdict, limit = "measured against", ""
        else:
            limit = f" (tolerance {self.tolerance:.0e})"
        return (
            f"{verdict} the run's model on {self.images} {self.source}: max abs diff "
            f"{self.max_abs_diff:.2e}{limit}, same class for {self.argmax_agreement:.1%} of images"
        )


def compare(a: np.ndarray, b: np.ndarray, source: str, tolerance=TOLERANCE) -> Check:
    """Two models' probabilities for the same images."""
    if a.shape != b.shape:
        return Check(len(a), source, float("inf"), 0.0, tolerance)
    same = float(np.mean(a.argmax(-1) == b.argmax(-1)))
    return Check(len(a), source, float(np.max(np.abs(a - b))), same, tolerance)


def check(
    reference: Predict, exported: Predict, batch: np.ndarray, source: str, tolerance=TOLERANCE
) -> Check:
    """Compare two predict functions (model input batch -> probabilities) on one batch."""
    a, b = np.asarray(reference(batch)), np.asarray(exported(batch))
    return compare(a, b, source, tolerance)


def check_images(loaded: LoadedRun) -> tuple[np.ndarray, np.ndarray | None, str]:
    """uint8 images in the data set's form with their labels: the run's whole test split, or
    seeded random images (no labels) when the run's data is not available here."""
    found = loaded.test_split()
    if found is not None and len(found[0]):
        return found[0], found[1], "test images"
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (CHECK_IMAGES, *loaded.data_shape), dtype=np.uint8)
    return images, None, "random images (the run's data is not available)"


def check_batch(loaded: LoadedRun, count: int = CHECK_IMAGES) -> tuple[np.ndarray, str]:
    """Model-ready inputs: the first test images (or random ones), prepared."""
    images, _, source = check_images(loaded)
    return np.asarray(loaded.prepare(images[:count]), dtype=np.float32), source


def speed(predict: Predict, prepared: np.ndarray) -> dict[str, float]:
    """Median seconds per call at batch 1 and at batch 32, each after a few calls of warm-up (a
    runtime prepares its kernels lazily after a change of shape); medians, so that another
    process's burst on a shared machine does not count."""

    def median_seconds(x: np.ndarray, runs: int) -> float:
        for _ in range(3):
            predict(x)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            predict(x)
            times.append(time.perf_counter() - start)
        return float(np.median(times))

    single = prepared[:1]
    batch = np.resize(prepared, (THROUGHPUT_BATCH, *prepared.shape[1:]))
    return {
        "latency_ms_batch1": median_seconds(single, LATENCY_RUNS) * 1000,
        "throughput_batch32": THROUGHPUT_BATCH / median_seconds(batch, THROUGHPUT_RUNS),
    }


def machine() -> dict[str, Any]:
    """What the speed was measured on: the CPUs and how busy they were (a shared machine's
    timings mean little without it)."""
    import platform

    return {
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "processor": platform.processor() or platform.machine(),
    }


def _accuracy(probabilities: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None or not len(labels):
        return None
    return float(np.mean(probabilities.argmax(-1) == labels))


def reference(loaded: LoadedRun, images: np.ndarray, labels: np.ndarray | None) -> dict:
    """The run's own model (model.keras in Keras) on the same images, timed the same way."""
    import keras
    import tensorflow as tf

    forward = tf.function(lambda x: loaded.model(x, training=False))
    probabilities = loaded.predict(images)
    sample = np.asarray(loaded.prepare(images[:THROUGHPUT_BATCH]), dtype=np.float32)
    return {
        "probabilities": probabilities,
        "accuracy": _accuracy(probabilities, labels),
        "file_bytes": _file_bytes(loaded.info.folder / "model.keras"),
        "runtime": f"keras {keras.__version__} (tensorflow {tf.__version__})",
        **speed(lambda x: forward(tf.constant(x)).numpy(), sample),
    }


def _measure(
    loaded: LoadedRun, t: Target, path: Path, images, labels, source: str, ref: dict
) -> dict[str, Any]:
    """The exported file, reloaded in its own runtime, on the check images."""
    runtime = runtimes.open_model(path)
    probabilities = predict_batches(runtime.predict, loaded.prepare, images, tta=loaded.tta)
    result = compare(ref["probabilities"], probabilities, source, t.tolerance)
    accuracy, run_accuracy = _accuracy(probabilities, labels), ref["accuracy"]
    sample = np.asarray(loaded.prepare(images[:THROUGHPUT_BATCH]), dtype=np.float32)
    return {
        "format": t.fmt,
        "quantize": t.quantize,
        "int8_io": t.int8_io,
        "file_bytes": _file_bytes(path),
        "runtime": runtime.name,
        **asdict(result),
        "ok": bool(result.ok),
        "accuracy": accuracy,
        "run_accuracy": run_accuracy,
        "tta": loaded.tta,  # both accuracies with this test-time augmentation (None: none)
        "accuracy_drop": None if accuracy is None else run_accuracy - accuracy,
        **speed(runtime.predict, sample),
        "machine": machine(),
        "message": result.message(),
    }


# --- the whole export ---------------------------------------------------------------------------


def export(
    loaded: LoadedRun,
    t: Target | str,
    out: Path | None = None,
    max_accuracy_drop: float | None = None,
    quiet: bool = False,
) -> dict:
    """Export, reload, check and measure; record in RUN/export.json. Returns this export's record;
    raises ExportCheckError (exit 1, the figures in its details) when the check or the accuracy
    gate fails, after recording it (the file is then not kept). Each of its three stages can take
    many seconds: their progress is shown (`kcnn.progress`; on stderr when `quiet`)."""
    import logging

    logging.getLogger("absl").setLevel(logging.ERROR)
    t = target(t) if isinstance(t, str) else t
    check_max_drop(max_accuracy_drop)
    run_folder = loaded.info.folder
    folder, made = prepare_folder(run_folder, out, t)
    try:
        record, failure = _export_into(loaded, t, folder, max_accuracy_drop, quiet)
    except BaseException:
        folders.unmake(made)  # a refused export leaves no empty folder behind either
        raise
    stored = {k: v for k, v in record.items() if k != "message"}
    exports.write(run_folder, t.key, {"key": t.key, **stored})
    _refresh_report(run_folder)
    if failure is not None:
        error = ExportCheckError(failure)
        error.details = record
        raise error
    return record


def _export_into(
    loaded: LoadedRun, t: Target, folder: Path, max_accuracy_drop: float | None, quiet: bool = False
) -> tuple[dict, str | None]:
    """Convert into a fresh private folder inside `folder`, measure the file there, and rename
    it into place only when it passes. Returns the record and why it failed (None: kept)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    images, labels, source = check_images(loaded)
    if max_accuracy_drop is not None and labels is None:
        raise KcnnError(
            "--max-accuracy-drop needs the run's test split, and its data set "
            f"({loaded.info.dataset}) is not available here"
        )
    calibration = calibration_sample(loaded) if t.quantize == "int8" else None
    final = folder / t.filename
    fresh_dir = Path(tempfile.mkdtemp(prefix=f".{t.filename}.", dir=folder))
    try:
        fresh = fresh_dir / t.filename
        with steps(f"export {t.key}", 3, "steps", quiet=quiet) as shown:
            _write(loaded, t, fresh, calibration)
            shown.advance(note=f"converted to {t.filename}")
            ref = reference(loaded, images, labels)
            shown.advance(note=f"the run's model measured on {len(images):,} {source}")
            record = _measure(loaded, t, fresh, images, labels, source, ref)
            shown.advance(note=f"the exported model checked on {len(images):,} {source}")
        record["run_model"] = {k: v for k, v in ref.items() if k != "probabilities"}
        if calibration is not None:
            record["calibration"] = {"split": "train", "images": len(calibration)}
        failure = _failure(record, t, max_accuracy_drop)
        record["max_accuracy_drop"] = max_accuracy_drop
        record["kept"] = failure is None
        record["path"] = str(final) if failure is None else None
        if failure is None:
            _put_in_place(fresh, final)
    finally:
        shutil.rmtree(fresh_dir, ignore_errors=True)
    return record, failure


def _failure(record: dict, t: Target, max_drop: float | None) -> str | None:
    """Why this export is not kept, in one line with its figures; None when it passes."""
    if not record["ok"]:
        return f"exported {t.key} model {record['message']}; not kept"
    drop = record["accuracy_drop"]
    if max_drop is not None and drop is not None and drop > max_drop:
        return (
            f"exported {t.key} model: test accuracy {record['accuracy']:.4f} against the run's "
            f"{record['run_accuracy']:.4f} on {record['images']} test images: a drop of "
            f"{drop:.4f} > --max-accuracy-drop {max_drop:g}; not kept"
        )
    return None


def _refresh_report(folder: Path) -> None:
    from kcnn.runs import html

    if (folder / html.REPORT).is_file():
        html.write_report_after(folder)
