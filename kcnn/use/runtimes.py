"""An exported model file in its own runtime, as one function: model-ready float32 batch -> class
probabilities.

`kcnn export` measures an exported model through this, and `kcnn predict --model` classifies
with it, so the figures recorded for a file and the classes a user sees come from the very same
runtime: onnxruntime for `.onnx`, the TFLite interpreter for `.tflite`, TensorFlow for a
SavedModel folder. A quantised TFLite model with integer input and output is fed and read back
through its own scale and zero point, so every runtime takes and gives the same floats.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from kcnn.errors import KcnnError

INSTALL_EXTRA = "pip install 'kcnn[export]'"
KINDS = ("onnx", "tflite", "saved-model")
MODEL_CAP = 2 * 1024**3  # protobuf (ONNX) and flatbuffers (TFLite) both end at 2 GiB
SAVED_MODEL_FILES = 10_000  # entries in a SavedModel folder: kcnn's exports hold a handful


@dataclass
class Runtime:
    kind: str  # one of KINDS
    name: str  # the runtime and its version, e.g. "onnxruntime 1.20.1"
    input_shape: tuple[int, ...] | None  # per image, when the file states it
    predict: Callable[[np.ndarray], np.ndarray]


def kind_of(path: Path) -> str:
    """What an exported model file is, from its name (a SavedModel is a folder)."""
    path = Path(path)
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if path.suffix.lower() == ".tflite":
        return "tflite"
    if (path / "saved_model.pb").is_file():
        return "saved-model"
    raise KcnnError(
        f"{path} is not an exported model: give a .onnx or .tflite file, or a SavedModel folder "
        "(one holding saved_model.pb), as `kcnn export` writes them"
    )


def require_onnx(converter: bool = False) -> None:
    """One line naming the extra when ONNX's packages are missing (they are optional)."""
    import importlib.util

    needed = ("tf2onnx", "onnx", "onnxruntime") if converter else ("onnxruntime",)
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        raise KcnnError(f"ONNX needs {', '.join(missing)}, not installed here: {INSTALL_EXTRA}")


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def _shape(dims) -> tuple[int, ...] | None:
    rest = list(dims)[1:]
    known = all(isinstance(d, (int, np.integer)) and d > 0 for d in rest)
    return tuple(int(d) for d in rest) if known else None


def _guarded(path: Path, predict: Callable[[np.ndarray], np.ndarray]) -> Callable:
    """A runtime's own failure on a batch (a file of another network, a damaged graph) becomes
    one line naming the file."""

    def run(x: np.ndarray) -> np.ndarray:
        try:
            return predict(x)
        except KcnnError:
            raise
        except Exception as e:  # noqa: BLE001  (each runtime raises its own classes)
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            raise KcnnError(f"{path} failed to run on the run's images: {first}") from None

    return run


def model_bytes(path: Path, what: str) -> bytes:
    """An exported model file's bytes, read only if it is a regular file (opened without
    blocking, checked on the open descriptor: a FIFO is never waited on) of at most MODEL_CAP.
    The runtimes then load from memory, never from the path: a file swapped in after the check
    is not read, and an ONNX model cannot name other files to read as its external data."""
    from kcnn.data.formats import file_kind

    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as e:
        raise KcnnError(f"cannot read {what} model {path}: {e.strerror or e}") from None
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise KcnnError(
                f"{what} model {path} is {file_kind(info.st_mode)}, not a regular file; give "
                "the model file itself"
            )
        if info.st_size > MODEL_CAP:
            raise KcnnError(f"{what} model {path} is over 2 GiB: no {what} model is that big")
        os.set_blocking(fd, True)
        try:
            return f.read(MODEL_CAP + 1)
        except OSError as e:
            raise KcnnError(f"cannot read {what} model {path}: {e.strerror or e}") from None


def _one_image_input(path: Path, what: str, inputs: list, outputs: list, rank: int) -> None:
    """A classifier kcnn can feed: one input of images (batch, height, width, channels), one
    output; anything else is refused in one line rather than fed."""
    if len(inputs) != 1 or len(outputs) != 1:
        raise KcnnError(
            f"{what} model {path} has {len(inputs)} input(s) and {len(outputs)} output(s); kcnn "
            "feeds models of one image input and one class output, as `kcnn export` writes them"
        )
    if rank != 4:
        raise KcnnError(
            f"{what} model {path} takes inputs of rank {rank}, not batches of images "
            "(batch, height, width, channels)"
        )


def onnx(path: Path) -> Runtime:
    require_onnx()
    content = model_bytes(path, "ONNX")
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(content, providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own unrelated classes)
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KcnnError(f"cannot load ONNX model {path}: {first}") from None
    inputs, outputs = session.get_inputs(), session.get_outputs()
    rank = len(inputs[0].shape or ()) if len(inputs) == 1 else 0
    _one_image_input(path, "ONNX", inputs, outputs, rank)
    (inp,) = inputs
    if inp.type != "tensor(float)":
        raise KcnnError(f"ONNX model {path} takes {inp.type}, not float images")

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {inp.name: np.asarray(x, dtype=np.float32)})[0]

    return Runtime("onnx", f"onnxruntime {_version('onnxruntime')}", _shape(inp.shape), predict)


def tflite(path: Path) -> Runtime:
    """The TFLite interpreter; tensors are resized only when the batch size changes. The model
    is handed over as bytes, which the interpreter checks with the flatbuffer verifier before it
    reads a field: a cut or damaged file is refused, where one loaded from its path can crash the
    process (the interpreter maps a file unverified)."""
    content = model_bytes(path, "TFLite")
    import tensorflow as tf

    try:
        with warnings.catch_warnings():  # "deprecated, use ai_edge_litert": not installed here
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_content=content)
    except (ValueError, RuntimeError) as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise KcnnError(f"cannot load TFLite model {path}: {first}") from None
    inputs, outputs = interpreter.get_input_details(), interpreter.get_output_details()
    rank = len(inputs[0]["shape"]) if len(inputs) == 1 else 0
    _one_image_input(path, "TFLite", inputs, outputs, rank)
    (inp,), (out,) = inputs, outputs
    if inp["dtype"] not in (np.float32, np.int8, np.uint8):
        raise KcnnError(f"TFLite model {path} takes {np.dtype(inp['dtype']).name}, not images")
    allocated: list[tuple[int, ...]] = []

    def predict(x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        if not allocated or allocated[0] != x.shape:
            interpreter.resize_tensor_input(inp["index"], list(x.shape))
            interpreter.allocate_tensors()
            allocated[:] = [x.shape]
        if inp["dtype"] != np.float32:  # integer input: the model's own quantisation
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        return y.copy()

    name = f"TFLite interpreter (tensorflow {tf.__version__})"
    return Runtime("tflite", name, _shape(inp["shape"]), predict)


def check_saved_model_folder(path: Path) -> None:
    """A SavedModel folder TensorFlow may read: only real folders and regular files inside (a
    link could lead anywhere, a FIFO would be waited on forever), of a sane count."""
    count = 0
    for root, dirs, files in os.walk(path, followlinks=False):
        for name in dirs + files:
            count += 1
            where = Path(root) / name
            mode = os.lstat(where).st_mode
            if count > SAVED_MODEL_FILES or not (stat.S_ISREG(mode) or stat.S_ISDIR(mode)):
                from kcnn.data.formats import file_kind

                problem = (
                    f"holds over {SAVED_MODEL_FILES:,} entries"
                    if count > SAVED_MODEL_FILES
                    else f"holds {where.relative_to(path)}, which is {file_kind(mode)}"
                )
                raise KcnnError(
                    f"SavedModel {path} {problem}: only a folder of regular files is loaded"
                )


def saved_model(path: Path) -> Runtime:
    """A SavedModel through its `serve` endpoint (what Keras's export writes), or its default
    serving signature."""
    check_saved_model_folder(path)
    import tensorflow as tf

    try:
        loaded = tf.saved_model.load(str(path))
    except (OSError, ValueError, RuntimeError, tf.errors.OpError) as e:
        raise KcnnError(f"cannot load SavedModel {path}: {str(e).splitlines()[0]}") from None
    if hasattr(loaded, "serve"):
        fn = loaded.serve
        spec = fn.input_signature[0] if fn.input_signature else None

        def predict(x: np.ndarray, keep=loaded) -> np.ndarray:  # `keep`: its variables live on
            return fn(tf.constant(np.asarray(x, dtype=np.float32))).numpy()

    else:
        signature = loaded.signatures.get("serving_default")
        if signature is None:
            raise KcnnError(f"SavedModel {path} has no `serve` endpoint or serving signature")
        (name, spec), *_ = signature.structured_input_signature[1].items()

        def predict(x: np.ndarray, keep=loaded) -> np.ndarray:
            (y,) = signature(**{name: tf.constant(np.asarray(x, dtype=np.float32))}).values()
            return y.numpy()

    shape = _shape(spec.shape.as_list()) if spec is not None else None
    return Runtime("saved-model", f"tensorflow {tf.__version__}", shape, predict)


def open_model(path: str | Path) -> Runtime:
    """The exported model at `path` in its runtime; a missing or unreadable file is a KcnnError."""
    path = Path(path)
    if not path.exists():
        raise KcnnError(f"exported model {path} does not exist")
    kind = kind_of(path)
    runtime = {"onnx": onnx, "tflite": tflite, "saved-model": saved_model}[kind](path)
    runtime.predict = _guarded(path, runtime.predict)
    return runtime
