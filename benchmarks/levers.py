"""Which settings make a kcnn training epoch faster? One lever at a time against kcnn's settings,
each in a fresh process, the reference run alternating with every variant.

    python benchmarks/levers.py [--arch lenet5] [--dataset mnist-5k] [--epochs 6] [--repeats 2]

Each run builds the model with kcnn (`forms.build`), feeds it kcnn's training pipeline
(`epoch_batches`, the same batches `kcnn train` gets) and times whole epochs with kcnn's two
callbacks in place, as kcnn's trainer does. Prints one JSON line per run, then a summary line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402

# kcnn's environment defaults (oneDNN's kernels among them) before TensorFlow starts, as `kcnn` gets them
import kcnn  # noqa: E402, F401

# name -> (environment, options); the options mirror what `one_run` understands. The reference is
# kcnn's own settings; each lever changes one of them, or adds one kcnn does not use.
LEVERS = {
    "kcnn as is": ({}, {}),
    "no op determinism": ({}, {"determinism": False}),
    "oneDNN off": ({"TF_ENABLE_ONEDNN_OPTS": "0"}, {}),
    "intra 2 / inter 1 threads": ({}, {"threads": (2, 1)}),
    "intra 1 / inter 1 threads": ({}, {"threads": (1, 1)}),
    "no per-batch callbacks": ({}, {"callbacks": False}),
    "one step per execution": ({}, {"steps_per_execution": 1}),
    "training state left to Keras (two traces)": ({}, {"build_state": False}),
    "tf.data autotuning on": ({}, {"autotune": True}),
    "XLA jit_compile": ({}, {"jit_compile": True}),
    "grappler off": ({}, {"grappler": False}),
    # Grappler's passes one at a time: which of them the first epoch's graph run pays for
    "grappler: no remapper (op fusion)": ({}, {"grappler_off": ["remapping"]}),
    "grappler: no constant folding": ({}, {"grappler_off": ["constant_folding"]}),
    "grappler: no arithmetic optimizer": ({}, {"grappler_off": ["arithmetic_optimization"]}),
    "grappler: no layout optimizer": ({}, {"grappler_off": ["layout_optimizer"]}),
    "grappler: no dependency optimizer": ({}, {"grappler_off": ["dependency_optimization"]}),
    "grappler: no loop optimizer": ({}, {"grappler_off": ["loop_optimization"]}),
    "grappler: no function optimizer": ({}, {"grappler_off": ["function_optimization"]}),
}


def one_run(arch, dataset, epochs, options) -> dict:
    """Train in this process with `options` applied; per-epoch training seconds."""
    if options.get("threads"):
        import tensorflow as tf

        intra, inter = options["threads"]
        tf.config.threading.set_intra_op_parallelism_threads(intra)
        tf.config.threading.set_inter_op_parallelism_threads(inter)
    import keras
    import tensorflow as tf

    from kcnn.data import pipeline
    from kcnn.data.prepared import prepare_data
    from kcnn.engine import callbacks as keras_callbacks
    from kcnn.engine import interrupts, performance, recipes
    from kcnn.engine.config import TrainConfig
    from kcnn.engine.trainer import default_input_shape
    from kcnn.models import forms

    config = TrainConfig(arch, dataset=dataset, epochs=epochs).validate()
    prepared = prepare_data(config, default_input_shape(arch, config.image_size))
    parts, input_shape = prepared.parts, prepared.input_shape
    keras.utils.set_random_seed(config.seed)
    if options.get("determinism", True):
        tf.config.experimental.enable_op_determinism()
    if options.get("grappler") is False:
        tf.config.optimizer.set_experimental_options({"disable_meta_optimizer": True})
    if options.get("grappler_off"):
        tf.config.optimizer.set_experimental_options(dict.fromkeys(options["grappler_off"], False))
    model = forms.build(arch, config.api, input_shape, parts.num_classes)
    steps = pipeline.steps_per_epoch(len(parts.y_train), config.batch_size)
    speed = performance.compile_options(steps)
    if "steps_per_execution" in options:
        speed["steps_per_execution"] = options["steps_per_execution"]
    model.compile(
        optimizer=recipes.make_optimizer(config.optimizer, config.lr),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=options.get("jit_compile", False),
        **speed,
    )
    if options.get("build_state", True):
        performance.build_training_state(model, input_shape)
    train_ds = pipeline.epoch_batches(
        parts.x_train,
        parts.y_train,
        input_shape,
        config.batch_size,
        config.seed,
        0,
        epochs,
    )
    if options.get("autotune"):
        tuned = tf.data.Options()
        tuned.autotune.enabled = True
        train_ds = train_ds.with_options(tuned)

    class Clock(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.seconds: list[float] = []
            self.cpu_seconds: list[float] = []  # what a busy machine moves least

        def on_epoch_begin(self, epoch, logs=None):
            self._start, self._cpu = time.perf_counter(), time.process_time()

        def on_epoch_end(self, epoch, logs=None):
            self.seconds.append(time.perf_counter() - self._start)
            self.cpu_seconds.append(time.process_time() - self._cpu)

    import tempfile

    callbacks = [Clock()]
    with tempfile.TemporaryDirectory() as out:
        if options.get("callbacks", True):
            guard = interrupts.SignalGuard()
            # kcnn's per-epoch records: the sentinel, and history.csv rewritten every epoch
            recorder = keras.callbacks.CSVLogger(str(Path(out) / "history.csv"))
            callbacks = [keras_callbacks.Sentinel(guard), recorder, *callbacks]
        history = model.fit(
            train_ds,
            epochs=epochs,
            steps_per_epoch=steps,
            callbacks=callbacks,
            verbose=0,
        )
    n, s = len(parts.y_train), callbacks[-1].seconds
    return {
        "images": n,
        "epoch_seconds": s,
        "epoch_cpu_seconds": callbacks[-1].cpu_seconds,
        # the median epoch after the first: one busy moment of a shared machine moves it least
        "later_images_per_second": n / common.median(s[1:]),
        "first_epoch_images_per_second": n / s[0],
        "loss": [float(v) for v in history.history["loss"]],
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--only", nargs="*", default=None)
    parser.add_argument("--one", default=None, help=argparse.SUPPRESS)  # a child run
    args = parser.parse_args(argv)
    if args.one is not None:
        print(json.dumps(one_run(args.arch, args.dataset, args.epochs, json.loads(args.one))))
        return {}

    def child(name):
        env, options = LEVERS[name]
        cmd = [common.PYTHON, __file__, "--arch", args.arch, "--dataset", args.dataset]
        cmd += ["--epochs", str(args.epochs), "--one", json.dumps(options)]
        r = common.last_json(common.run(cmd, env)["stdout"])
        print(json.dumps({"lever": name, **r}), file=sys.stderr)
        return r

    names = [n for n in LEVERS if n != "kcnn as is" and (not args.only or n in args.only)]
    rows = {}
    for name in names:
        ratios, speeds, refs, losses, firsts, ref_firsts = [], [], [], None, [], []
        cpu_firsts, ref_cpu_firsts = [], []
        for _ in range(args.repeats):
            ref, var = child("kcnn as is"), child(name)  # alternately, in the same run
            firsts.append(var["epoch_seconds"][0])
            ref_firsts.append(ref["epoch_seconds"][0])
            cpu_firsts.append(var["epoch_cpu_seconds"][0])
            ref_cpu_firsts.append(ref["epoch_cpu_seconds"][0])
            refs.append(ref["later_images_per_second"])
            speeds.append(var["later_images_per_second"])
            ratios.append(speeds[-1] / refs[-1])
            same = ref["loss"] == var["loss"]
            losses = var["loss"][-1], ref["loss"][-1], same
        rows[name] = {
            "images_per_second": common.median(speeds),
            "reference_images_per_second": common.median(refs),
            "ratio": common.median(ratios),
            "first_epoch_seconds": common.median(firsts),
            "reference_first_epoch_seconds": common.median(ref_firsts),
            "first_epoch_cpu_seconds": common.median(cpu_firsts),
            "reference_first_epoch_cpu_seconds": common.median(ref_cpu_firsts),
            "final_loss": losses[0],
            "reference_final_loss": losses[1],
            "same_history": losses[2],
        }
        print(json.dumps({name: rows[name]}), file=sys.stderr)
    summary = {"arch": args.arch, "dataset": args.dataset, "epochs": args.epochs, "levers": rows}
    print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    main()
