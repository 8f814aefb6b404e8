"""Run the real `kcnn` command line in this process and print its per-epoch training seconds.

    python benchmarks/kcnn_timed.py train lenet5 --dataset mnist-5k --epochs 10 --out DIR

The command runs unchanged; the only addition is a note of the trainer's training clock at the
end of each epoch (the clock that gives metrics.json its `train_images_per_second`, validation
excluded), so the first epoch can be reported apart. Prints one JSON line after kcnn's output.
"""

from __future__ import annotations

import json
import os
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main() -> None:
    from kcnn.engine import callbacks as callbacks_module

    marks: list[float] = []
    recorder = callbacks_module.Recorder

    def noting(trainer):
        r = recorder(trainer)
        end = r.on_epoch_end

        def on_epoch_end(epoch, logs=None):
            end(epoch, logs)
            marks.append(trainer.train_seconds)

        r.on_epoch_end = on_epoch_end
        return r

    callbacks_module.Recorder = noting
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
