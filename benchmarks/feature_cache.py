"""Feature caching benchmark: a frozen VGG16 + seed head trained for 10 epochs on `shapes`, once on
cached backbone features and once running the backbone every epoch, on the same data and seed.

    python benchmarks/feature_cache.py [--epochs 10] [--backbone vgg16] [--shapes-count 2000]
                                       [--json results.json]

Prints both runs' time and accuracy and the speed ratio. The cached run goes first, so any
one-off TensorFlow warm-up counts against caching, not for it. `--weights none` keeps it offline;
the cost of the frozen backbone does not depend on its weights.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vgg16")
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--weights", default="none")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--shapes-count", type=int, default=2000, help="images `shapes` draws")
    parser.add_argument(
        "--json", dest="json_path", default=None, help="Also write the results to this file."
    )
    args = parser.parse_args(argv)

    from kcnn.commands.transfer import TransferConfig, transfer

    # The frozen phase with its validation: the feature pass (cached run) plus every epoch from
    # its start to its end, validation included. kcnn's own training clock leaves validation
    # out, so it charges the cached run for the validation images' features and the uncached
    # run for none of its ten validation passes through the backbone; this clock charges both
    # for all of them.
    from kcnn.engine import callbacks as callbacks_module
    from kcnn.runs.records import json_text, write_json

    epoch_walls: list[float] = []
    recorder = callbacks_module.Recorder

    def timing(trainer):
        r = recorder(trainer)
        begin, end = r.on_epoch_begin, r.on_epoch_end

        def on_epoch_begin(epoch, logs=None):
            r.epoch_started = time.perf_counter()
            begin(epoch, logs)

        def on_epoch_end(epoch, logs=None):
            end(epoch, logs)
            epoch_walls.append(time.perf_counter() - r.epoch_started)

        r.on_epoch_begin, r.on_epoch_end = on_epoch_begin, on_epoch_end
        return r

    callbacks_module.Recorder = timing
    results = {}
    with tempfile.TemporaryDirectory() as out:
        for label, cache in (("cached features", True), ("backbone every epoch", False)):
            config = TransferConfig(
                [args.backbone],
                dataset=args.dataset,
                weights=args.weights,
                epochs=args.epochs,
                limit=args.limit,
                shapes_count=args.shapes_count,
                cache_features=cache,
                out=out,
                name=f"bench-{'cached' if cache else 'full'}",
            )
            start = time.perf_counter()
            epoch_walls.clear()
            m = transfer(config, quiet=True).runs[0].metrics
            results[label] = {
                "wall_seconds": time.perf_counter() - start,
                "frozen_phase_seconds": sum(epoch_walls) + (m["feature_seconds"] or 0.0),
                "train_seconds": m["train_seconds"],
                "feature_seconds": m["feature_seconds"],
                "test_accuracy": m["test_accuracy"],
                "test_loss": m["test_loss"],
                "best_val_accuracy": m["best_val_accuracy"],
            }
            print(f"{label}: done in {results[label]['wall_seconds']:.1f} s", file=sys.stderr)
    cached, full = results["cached features"], results["backbone every epoch"]
    summary = {
        "backbone": args.backbone,
        "dataset": args.dataset,
        "epochs": args.epochs,
        "weights": args.weights,
        "shapes_count": args.shapes_count,
        "runs": results,
        "speedup_training": full["train_seconds"] / cached["train_seconds"],
        "speedup_frozen_phase": full["frozen_phase_seconds"] / cached["frozen_phase_seconds"],
        "speedup_wall": full["wall_seconds"] / cached["wall_seconds"],
        "test_accuracy_difference": abs(full["test_accuracy"] - cached["test_accuracy"]),
    }
    print(
        f"\n{args.epochs}-epoch frozen {args.backbone} + seed head on {args.dataset} (--weights {args.weights})\n"
    )
    print(
        "| run | training s | frozen phase with validation s | whole run s | test accuracy "
        "| test loss |\n|---|---|---|---|---|---|"
    )
    for label, r in results.items():
        print(
            f"| {label} | {r['train_seconds']:.1f} | {r['frozen_phase_seconds']:.1f} "
            f"| {r['wall_seconds']:.1f} | {r['test_accuracy']:.4f} | {r['test_loss']:.4f} |"
        )
    print(
        f"\nspeed-up with caching: {summary['speedup_training']:.1f}× training, "
        f"{summary['speedup_frozen_phase']:.1f}× frozen phase with validation, "
        f"{summary['speedup_wall']:.1f}× whole run (build, evaluation and saving included); "
        f"test accuracy difference {summary['test_accuracy_difference']:.4f}\n"
    )
    print(json_text(summary))
    if args.json_path:
        write_json(args.json_path, summary)
    return summary


if __name__ == "__main__":
    main()
