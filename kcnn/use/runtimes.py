"""An exported model file in its own runtime, as one function: model-ready float32 batch -> class
probabilities.

`kcnn export` measures an exported model through this, and `kcnn predict --model` classifies
with it, so the figures recorded for a file and the classes a user sees come from the very same
runtime: onnxruntime for `.onnx`, the TFLite interpreter for `.tflite`, TensorFlow for a
SavedModel folder. A quantised TFLite model with integer input and output is fed and read back
through its own scale and zero point, so every runtime takes and gives the same floats.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from kcnn.errors import KcnnError

INSTALL_EXTRA = "pip install 'kcnn[export]'"
KINDS = ("onnx", "tflite", "saved-model")


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


def onnx(path: Path) -> Runtime:
    require_onnx()
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as e:  # noqa: BLE001  (onnxruntime raises its own unrelated classes)
        raise KcnnError(f"cannot load ONNX model {path}: {str(e).splitlines()[0]}") from None
    (inp,) = session.get_inputs()

    def predict(x: np.ndarray) -> np.ndarray:
        return session.run(None, {inp.name: np.asarray(x, dtype=np.float32)})[0]

    return Runtime("onnx", f"onnxruntime {_version('onnxruntime')}", _shape(inp.shape), predict)


def tflite(path: Path) -> Runtime:
    """The TFLite interpreter; tensors are resized only when the batch size changes."""
    import tensorflow as tf

    try:
        with warnings.catch_warnings():  # "deprecated, use ai_edge_litert": not installed here
            warnings.simplefilter("ignore")
            interpreter = tf.lite.Interpreter(model_path=str(path))
    except (ValueError, RuntimeError) as e:
        raise KcnnError(f"cannot load TFLite model {path}: {str(e).splitlines()[0]}") from None
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
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


def saved_model(path: Path) -> Runtime:
    """A SavedModel through its `serve` endpoint (what Keras's export writes), or its default
    serving signature."""
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
