"""One training run of `kcnn train lenet5 --dataset shapes` on N generated images (the Python API,
since the command line has no --shapes-count). Run by run_all.py in a fresh process per N, which
reads this process's peak memory; prints one JSON line.

    python benchmarks/scaling.py 20000 [--epochs 1]
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("images", type=int)
    parser.add_argument("--arch", default="lenet5")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args(argv)
    from kcnn.commands.train import train
    from kcnn.engine.config import TrainConfig

    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        config = TrainConfig(
            args.arch, dataset="shapes", shapes_count=args.images, epochs=args.epochs, out=out
        )
        m = train(config, quiet=True).metrics
    result = {
        "images": args.images,
        "train_images": int(round(args.images * 0.8 * 0.8)),
        "wall": time.perf_counter() - start,
        "train_seconds": m["train_seconds"],
        "train_images_per_second": m["train_images_per_second"],
        "test_accuracy": m["test_accuracy"],
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
