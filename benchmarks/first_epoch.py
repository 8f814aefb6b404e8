"""Where kcnn's first epoch goes: LeNet-5 on mnist-5k, set up as `kcnn train` sets it up (same
model, compile settings, training state built first, training stream), each of two epochs run
as its own `fit` call under cProfile, and the first epoch's time sorted into what it does that a
later epoch does not.

    python benchmarks/first_epoch.py [--arch lenet5] [--dataset mnist-5k] [--top 25]

Prints the breakdown (seconds of each epoch under the profiler, which slows Python code far
more than TensorFlow's C++ work: use the shares to find where to look, not as costs) and one
JSON line. Judge a change by `--no-profile`'s CPU time per epoch (`time.process_time`, which a
loaded machine hardly moves) over several fresh processes. The findings are in
benchmarks/NOTES.md.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402

# What the first epoch does beyond a later one, by the function that does it: (label, file
# fragment, function name); each function's cumulative time in the epoch's profile.
PARTS = [
    ("making the train function (Keras)", "keras/src/backend/tensorflow/trainer.py",
     "make_train_function"),
    ("tracing the step (tf.function: all Python below)", "tracing_compilation.py",
     "_maybe_define_function"),
    ("  of which autograph converting Python", "autograph/impl/conversion.py", "convert"),
    ("  of which autograph converting (transpiler)", "autograph/pyct/transpiler.py",
     "transform_function"),
    ("  of which Keras layers called in the trace", "keras/src/layers/layer.py", "__call__"),
    ("  of which the loss and metrics in the trace", "keras/src/trainers/trainer.py",
     "compute_metrics"),
    ("  of which the optimizer's update in the trace", "keras/src/optimizers/base_optimizer.py",
     "apply_gradients"),
    ("running the graph (first run: grappler, kernels)", "eager/execute.py", "quick_execute"),
    ("the data pipeline: iterator", "data/ops/iterator_ops.py", "__init__"),
    ("the data pipeline: batches fetched", "data/ops/iterator_ops.py", "_next_internal"),
    ("callbacks", "keras/src/callbacks/callback_list.py", "on_train_batch_end"),
    ("callbacks: epoch begin/end", "keras/src/callbacks/callback_list.py", "on_epoch_end"),
]  # fmt: skip


def cumulative(stats: pstats.Stats, fragment: str, name: str) -> float:
    total = 0.0
    for (file, _, func), (_, _, _, cum, _) in stats.stats.items():
        if fragment in file and func == name:
            total = max(total, cum)  # recursive entries repeat the outer figure
    return total


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--top", type=int, default=0, help="also print the top N functions")
    parser.add_argument("--no-profile", action="store_true", help="only time the epochs")
    args = parser.parse_args(argv)
    x, y, _, _, classes = common.load_split(args.dataset)
    import keras
    import tensorflow as tf

    from kcnn.data.pipeline import epoch_batches, fit_mode, steps_per_epoch
    from kcnn.engine import performance
    from kcnn.models import forms

    keras.utils.set_random_seed(83)
    tf.config.experimental.enable_op_determinism()
    shape = (32, 32, x.shape[-1])
    assert fit_mode(x.shape[1:3], shape[:2]) in ("none", "pad")
    model = forms.build(args.arch, "sequential", shape, classes)
    steps = steps_per_epoch(len(y), 128)
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        **performance.compile_options(steps),
    )
    performance.build_training_state(model, shape)
    result = {"arch": args.arch, "dataset": args.dataset, "epochs": {}}
    for epoch in (0, 1):  # each its own fit call, so each pays fit's own set-up alike
        profile = cProfile.Profile()
        start, cpu = time.perf_counter(), time.process_time()
        if not args.no_profile:
            profile.enable()
        stream = epoch_batches(x, y, shape, 128, 83, epoch, epoch + 1)
        model.fit(stream, initial_epoch=epoch, epochs=epoch + 1, steps_per_epoch=steps, verbose=0)
        profile.disable()
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        entry = {"seconds": seconds, "cpu_seconds": cpu}
        print(f"epoch {epoch + 1}: {seconds:.2f} s, {cpu:.2f} s of CPU", file=sys.stderr)
        if not args.no_profile:
            stats = pstats.Stats(profile)
            entry["parts"] = {label: cumulative(stats, f, n) for label, f, n in PARTS}
            for label, value in entry["parts"].items():
                print(f"  {value:7.3f} s  {label}", file=sys.stderr)
            if args.top:
                stats.sort_stats("cumulative").print_stats(args.top)
        result["epochs"][epoch + 1] = entry
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
