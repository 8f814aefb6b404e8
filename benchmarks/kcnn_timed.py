"""Run the real `kcnn` command line in this process and print its per-epoch training seconds.

    python benchmarks/kcnn_timed.py train lenet5 --dataset mnist-5k --epochs 10 --out DIR

With KCNN_BENCH_PROPOSED=1 the trainer change proposed in benchmarks/RESULTS.md is patched in
first (`propose_trainer_change`). Otherwise the command runs unchanged; the only addition is a note of the Recorder's training clock at the
end of each epoch (the clock that gives metrics.json its `train_images_per_second`, validation
excluded), so the first epoch can be reported apart. Prints one JSON line after kcnn's output.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def propose_trainer_change() -> None:
    """The change proposed for the trainer, patched in for measuring it: compile with
    `performance.compile_options(steps per epoch)`, i.e. set `steps_per_execution` before the
    first `fit` (the trainer would pass it to `model.compile`)."""
    import keras

    from kcnn.engine import performance

    fit = keras.Model.fit

    def fit_with_options(self, *args, steps_per_epoch=None, **kwargs):
        if steps_per_epoch:
            for key, value in performance.compile_options(steps_per_epoch).items():
                setattr(self, key, value)
        return fit(self, *args, steps_per_epoch=steps_per_epoch, **kwargs)

    keras.Model.fit = fit_with_options


def main() -> None:
    from kcnn.engine import training

    marks: list[float] = []
    recorder = getattr(training, "_recorder", None)
    if recorder is not None:

        def noting(*args, **kwargs):
            r = recorder(*args, **kwargs)
            end = r.on_epoch_end

            def on_epoch_end(epoch, logs=None):
                end(epoch, logs)
                marks.append(r.train_seconds)

            r.on_epoch_end = on_epoch_end
            return r

        training._recorder = noting
    if os.environ.get("KCNN_BENCH_PROPOSED"):
        propose_trainer_change()
    from kcnn.cli import main as kcnn_main

    start = time.perf_counter()
    try:
        kcnn_main(sys.argv[1:])
    except SystemExit as e:
        if e.code:
            raise
    epochs = [b - a for a, b in zip([0.0, *marks], marks, strict=False)]
    print(json.dumps({"epoch_seconds": epochs, "wall": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
