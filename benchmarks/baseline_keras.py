"""The plain-Keras baseline: the network written out by hand and `model.fit` on NumPy arrays,
the way keras.io's examples train a small convnet.

    python benchmarks/baseline_keras.py lenet5 --dataset mnist-5k --epochs 10 [--kcnn-settings]

It runs twice in `make bench`: as users write it (Keras's defaults: one step per call, the
training state created while the first step is traced, which traces it twice), and with
`--kcnn-settings`, the settings kcnn uses: its two compile settings (kcnn/engine/performance.py:
several steps per call, the training state built before `fit`) and oneDNN's CPU kernels
(kcnn/__init__.py turns them on where TensorFlow leaves them off). kcnn against the first shows what a user gains;
against the second, what kcnn's own design adds beyond those settings.

Same network, split, batch size, optimizer, learning rate and epochs as `kcnn train`, no
validation (kcnn's figure excludes validation time too). The images are padded and scaled once,
before the clock starts. Prints one JSON line: per-epoch training seconds, images/second and
test accuracy.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
# As the caller set it, before importing kcnn (for its data) sets kcnn's default
CALLER_ONEDNN = os.environ.get("TF_ENABLE_ONEDNN_OPTS")

import common  # noqa: E402


def build(arch: str, input_shape, classes: int):
    import keras
    from keras import layers

    if arch == "lenet5":
        body = [
            layers.Conv2D(6, 5, activation="tanh"), layers.AveragePooling2D(2),
            layers.Conv2D(16, 5, activation="tanh"), layers.AveragePooling2D(2),
            layers.Conv2D(120, 5, activation="tanh"), layers.Flatten(),
            layers.Dense(84, activation="tanh"),
        ]  # fmt: skip
    elif arch == "simple-cnn":
        body = [
            layers.Conv2D(32, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"), layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, padding="same", activation="relu"), layers.Flatten(),
            layers.Dense(128, activation="relu"),
        ]  # fmt: skip
    else:
        raise SystemExit(f"unknown architecture {arch}")
    return keras.Sequential(
        [keras.Input(input_shape), *body, layers.Dense(classes, activation="softmax")]
    )


def main(argv=None) -> dict:
    kcnn_settings = "--kcnn-settings" in (argv := list(sys.argv[1:] if argv is None else argv))
    argv = [a for a in argv if a != "--kcnn-settings"]
    args, (x_train, y_train, x_test, y_test, classes) = common.baseline_setup(argv)
    if not kcnn_settings:  # TensorFlow's own choice of kernels, as a plain script gets it
        if CALLER_ONEDNN is None:
            os.environ.pop("TF_ENABLE_ONEDNN_OPTS", None)
        else:
            os.environ["TF_ENABLE_ONEDNN_OPTS"] = CALLER_ONEDNN
    assert "tensorflow" not in sys.modules, "TensorFlow must start after the kernels are chosen"
    import keras

    keras.utils.set_random_seed(args.seed)
    xs, xt = common.as_model_input(x_train), common.as_model_input(x_test)
    model = build(args.arch, xs.shape[1:], classes)
    settings = {}
    if kcnn_settings:
        from kcnn.data.pipeline import steps_per_epoch
        from kcnn.engine import performance

        settings = performance.compile_options(steps_per_epoch(len(y_train), args.batch_size))
    model.compile(
        optimizer=keras.optimizers.Adam(args.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **settings,
    )
    if kcnn_settings:
        performance.build_training_state(model, xs.shape[1:])

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds = []

        def on_epoch_begin(self, epoch, logs=None):
            self._start = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)

    clock = Clock()
    model.fit(
        xs, y_train, batch_size=args.batch_size, epochs=args.epochs, callbacks=[clock], verbose=0
    )
    _, accuracy = model.evaluate(xt, y_test, batch_size=args.batch_size, verbose=0)
    n, s = len(y_train), clock.seconds
    result = {
        "contestant": "keras with kcnn's settings" if kcnn_settings else "keras",
        "settings": {k: int(v) for k, v in settings.items()},
        "params": model.count_params(),
        "keras": keras.__version__,
        "backend": keras.backend.backend(),
        "images": n,
        "epoch_seconds": s,
        "images_per_second": n * args.epochs / sum(s),
        "first_epoch_images_per_second": n / s[0],
        "later_images_per_second": n * (args.epochs - 1) / sum(s[1:]) if args.epochs > 1 else None,
        "test_accuracy": float(accuracy),
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
