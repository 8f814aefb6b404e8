"""Evaluation and prediction speed: kcnn's test-set evaluation and its input pipeline against
the same work written by hand on NumPy arrays (one pass each), in a shuffled order per repeat,
same model.

    python benchmarks/eval_predict.py [--images 6000] [--repeats 3] [--predict-images 1000]

In-process: kcnn's evaluation (`evaluation.evaluate` on kcnn's pipeline) and `model.predict` on
kcnn's pipeline against the same calls on a NumPy array prepared beforehand. End to end: the
`kcnn predict RUN FOLDER --json` command over a folder of PNG files against a by-hand script that
loads the same model.keras, reads the same files with PIL and calls `model.predict` — both fresh
processes, start-up included. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402
import protocol  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="simple-cnn")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=protocol.MIN_REPEATS)
    parser.add_argument("--predict-images", type=int, default=1000)
    args = parser.parse_args(argv)

    from kcnn.data import datasets

    data = datasets.load("shapes", None, 83, args.images)
    x, y, names = data.x_train, data.y_train, data.class_names
    import keras
    import numpy as np

    from kcnn.data.pipeline import make_dataset
    from kcnn.engine import evaluation
    from kcnn.models import forms

    keras.utils.set_random_seed(83)
    model = forms.build(args.arch, "sequential", x.shape[1:], len(names))
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    x_float = common.as_model_input(x, x.shape[1])  # by hand: converted once, clock not running

    def timed(fn):
        start = time.perf_counter()
        fn()
        return len(y) / (time.perf_counter() - start)

    def hand_eval():
        """What kcnn's evaluation does, by hand and in one pass as well: the probabilities once,
        then the loss, the accuracy and the per-class report from them (the same work; before,
        the by-hand side ran `evaluate` and then `predict`, two passes against kcnn's one)."""
        from sklearn.metrics import classification_report, confusion_matrix

        p = model.predict(x_float, batch_size=args.batch_size, verbose=0)
        loss = float(np.mean(keras.losses.sparse_categorical_crossentropy(y, p)))
        y_pred = p.argmax(-1)
        classification_report(y, y_pred, output_dict=True, zero_division=0)
        confusion_matrix(y, y_pred)
        return loss, float(np.mean(y_pred == y))

    contestants = {
        # kcnn's figures include building its pipeline (the uint8 -> float conversion)
        "kcnn_evaluate": lambda: evaluation.evaluate(
            model, make_dataset(x, y, x.shape[1:], args.batch_size), y, names
        ),
        "hand_evaluate": hand_eval,
        "kcnn_predict": lambda: model.predict(
            make_dataset(x, y, x.shape[1:], args.batch_size), verbose=0
        ),
        "hand_predict": lambda: model.predict(x_float, batch_size=args.batch_size, verbose=0),
    }
    for fn in contestants.values():  # warm-up: every function traced once, off the clock
        fn()
    runs = protocol.shuffled_repeats(
        {k: (lambda fn=fn: {"images_per_second": timed(fn)}) for k, fn in contestants.items()},
        args.repeats,
        seed=2,
    )
    command = predict_command(args.arch, x[: args.predict_images], args.repeats)
    for r, kcnn_s, hand_s in zip(
        runs, command["kcnn_predict_command"], command["hand_predict_script"], strict=True
    ):
        r["kcnn_predict_command"] = {"images_per_second": kcnn_s}
        r["hand_predict_script"] = {"images_per_second": hand_s}
    names = [*contestants, "kcnn_predict_command", "hand_predict_script"]
    result = {
        "arch": args.arch,
        "images": len(y),
        "predict_images": min(args.predict_images, len(y)),
        **{k: common.median([r[k]["images_per_second"] for r in runs]) for k in names},
        "ratios": {
            what: protocol.paired_ratios(runs, f"kcnn_{what}", [hand], "images_per_second")[hand]
            for what, hand in (
                ("evaluate", "hand_evaluate"),
                ("predict", "hand_predict"),
                ("predict_command", "hand_predict_script"),
            )
        },
        "repeats": args.repeats,
        "runs": runs,
    }
    print(json.dumps(result))
    return result


# by hand: what a user writes without kcnn — load the model, read the files, model.predict
HAND_PREDICT = """
import sys, pathlib, numpy as np, keras
from PIL import Image
model = keras.models.load_model(sys.argv[1], compile=False)
files = sorted(pathlib.Path(sys.argv[2]).glob("*.png"))
x = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files]).astype("float32") / 255
p = model.predict(x, batch_size=128, verbose=0)
print(len(files), p.shape)
"""


def predict_command(arch: str, images, repeats: int) -> dict:
    """images/s of `kcnn predict RUN FOLDER --json` and of HAND_PREDICT, alternately, over the
    same PNG files and the same run's model (trained 1 epoch: speed does not depend on weights)."""
    import tempfile

    from PIL import Image

    from kcnn.commands.train import train
    from kcnn.engine.config import TrainConfig

    figures = {"kcnn_predict_command": [], "hand_predict_script": []}
    with tempfile.TemporaryDirectory() as out:
        run = train(TrainConfig(arch, dataset="shapes", epochs=1, out=out), quiet=True).run_dir
        folder = Path(out, "images")
        folder.mkdir()
        for i, image in enumerate(images):
            Image.fromarray(image).save(folder / f"{i:05d}.png")
        kcnn = [common.PYTHON, "-m", "kcnn.cli", "predict", str(run), str(folder), "--json"]
        hand = [common.PYTHON, "-c", HAND_PREDICT, str(Path(run, "model.keras")), str(folder)]
        order = [("kcnn_predict_command", kcnn), ("hand_predict_script", hand)]
        rng = random.Random(3)
        for _ in range(repeats):  # each a fresh process, in a shuffled order per repeat
            rng.shuffle(order)
            for name, cmd in order:
                figures[name].append(len(images) / common.run(cmd)["wall"])
    return figures


if __name__ == "__main__":
    main()
