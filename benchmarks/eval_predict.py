"""Evaluation and prediction speed: kcnn's test-set evaluation and its input pipeline against
`model.evaluate` / `model.predict` written by hand on NumPy arrays, alternately, same model.

    python benchmarks/eval_predict.py [--images 6000] [--repeats 3]

kcnn has no `predict` command yet, so "kcnn predict" here is `model.predict` on kcnn's own input
pipeline (`make_dataset`), the path such a command would take. Prints one JSON line.
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
    result = {
        "arch": args.arch,
        "images": len(y),
        **{k: common.median(v) for k, v in figures.items()},
        "runs": figures,
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
