"""Evaluation and prediction speed: kcnn's test-set evaluation and its input pipeline against
`model.evaluate` / `model.predict` written by hand on NumPy arrays, alternately, same model.

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
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--arch", default="simple-cnn")
    parser.add_argument("--images", type=int, default=6000)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--predict-images", type=int, default=1000)
    args = parser.parse_args(argv)

    from kcnn.data import datasets

    data = datasets.load("shapes", None, 83, args.images)
    x, y, names = data.x_train, data.y_train, data.class_names
    import keras

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

    figures = {k: [] for k in ("kcnn_evaluate", "hand_evaluate", "kcnn_predict", "hand_predict")}
    hand_eval = lambda: (  # noqa: E731  what kcnn's evaluation does: loss/accuracy, then predictions
        model.evaluate(x_float, y, batch_size=args.batch_size, verbose=0),
        model.predict(x_float, batch_size=args.batch_size, verbose=0),
    )
    timed(hand_eval)  # warm-up: traces every function once, for both contestants
    for _ in range(args.repeats):  # alternately
        # kcnn's figure includes building its pipeline (the uint8 -> float conversion)
        figures["kcnn_evaluate"].append(
            timed(
                lambda: evaluation.evaluate(
                    model, make_dataset(x, y, x.shape[1:], args.batch_size), y, names
                )
            )
        )
        figures["hand_evaluate"].append(timed(hand_eval))
        figures["kcnn_predict"].append(
            timed(
                lambda: model.predict(make_dataset(x, y, x.shape[1:], args.batch_size), verbose=0)
            )
        )
        figures["hand_predict"].append(
            timed(lambda: model.predict(x_float, batch_size=args.batch_size, verbose=0))
        )
    figures.update(predict_command(args.arch, x[: args.predict_images], args.repeats))
    result = {
        "arch": args.arch,
        "images": len(y),
        "predict_images": min(args.predict_images, len(y)),
        **{k: common.median(v) for k, v in figures.items()},
        "runs": figures,
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
        for _ in range(repeats):  # alternately, each a fresh process
            figures["kcnn_predict_command"].append(len(images) / common.run(kcnn)["wall"])
            figures["hand_predict_script"].append(len(images) / common.run(hand)["wall"])
    return figures


if __name__ == "__main__":
    main()
