"""The GPU section of `make bench`: kcnn against PyTorch (eager and `torch.compile`) on the GPU,
on resnet18 and simple-cnn at a batch that fills the device, with and without mixed precision
and XLA; and frozen MobileNetV2 feature extraction at 224×224 (kcnn's feature pass against
`keras.applications` by hand). One repeat of each, in a shuffled order: a few minutes.

    python benchmarks/gpu.py [--quick] [--allow-cpu]

Without a GPU visible to TensorFlow it prints {"skipped": ...} and does nothing (run_all.py runs
it only on a GPU machine). `--allow-cpu --quick` runs every contestant at a tiny size on the CPU,
to check that the script works where there is no GPU (its figures mean nothing). Prints one JSON
line.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import common  # noqa: E402

HERE = Path(__file__).resolve().parent
PY = common.PYTHON

# kcnn, in a fresh process per configuration (the precision policy is process-wide)
KCNN_RUN = """
import json, sys, tempfile
from kcnn.commands.train import train
from kcnn.engine.config import TrainConfig
arch, count, epochs, batch, mixed, jit = sys.argv[1:7]
with tempfile.TemporaryDirectory() as out:
    config = TrainConfig(arch, dataset="shapes", shapes_count=int(count), epochs=int(epochs),
                         batch_size=int(batch), mixed_precision=mixed == "1", jit_compile=jit == "1",
                         out=out)
    m = train(config, quiet=True).metrics
print(json.dumps({"images_per_second": m["train_images_per_second"],
                  "train_seconds": m["train_seconds"], "test_accuracy": m["test_accuracy"],
                  "params": m["params"]["trainable"]}))
"""

# kcnn's feature pass: `transfer` with a frozen MobileNetV2 at 224×224, features cached
FEATURES_KCNN = """
import json, sys, tempfile
from kcnn.commands.transfer import TransferConfig, transfer
count, mixed = int(sys.argv[1]), sys.argv[2] == "1"
with tempfile.TemporaryDirectory() as out:
    config = TransferConfig(["mobilenetv2"], dataset="shapes", shapes_count=count, weights="none",
                            image_size=224, epochs=1, mixed_precision=mixed, out=out)
    m = transfer(config, quiet=True).runs[0].metrics
images = round(count * 0.8)  # the training and validation images pass through the backbone
print(json.dumps({"images_per_second": images / m["feature_seconds"],
                  "feature_seconds": m["feature_seconds"], "images": images}))
"""

# the same by hand: keras.applications' MobileNetV2, images resized on the device, predict
FEATURES_KERAS = """
import json, sys, time
import numpy as np, keras, tensorflow as tf
count, batch, mixed = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
if mixed:
    keras.mixed_precision.set_global_policy("mixed_float16" if tf.config.list_physical_devices("GPU") else "mixed_bfloat16")
from kcnn.data import datasets
x = datasets.load("shapes", None, 83, count).x_train[: round(count * 0.8)]
model = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(224, 224, 3))
pre = keras.applications.mobilenet_v2.preprocess_input
ds = tf.data.Dataset.from_tensor_slices(x).batch(batch).map(
    lambda b: pre(tf.image.resize(tf.cast(b, tf.float32), (224, 224)))).prefetch(2)
start = time.perf_counter()  # tracing included, as in kcnn's feature clock
model.predict(ds, verbose=0)
seconds = time.perf_counter() - start
print(json.dumps({"images_per_second": len(x) / seconds, "feature_seconds": seconds,
                  "images": len(x)}))
"""


def gpu_count() -> int:
    probe = "import tensorflow as tf; print(len(tf.config.list_physical_devices('GPU')))"
    try:
        return int(common.run([PY, "-c", probe])["stdout"].strip().splitlines()[-1])
    except (RuntimeError, ValueError, IndexError):
        return 0


def attempt(cmd: list[str]) -> dict:
    """One contestant's JSON line, or why it failed (the others still count)."""
    try:
        return common.last_json(common.run(cmd)["stdout"])
    except (RuntimeError, ValueError) as e:
        return {"error": str(e).strip().splitlines()[-1][:300]}


def training_contestants(arch: str, count: int, epochs: int, batch: int) -> dict:
    torch_args = [arch, "--dataset", "shapes", "--shapes-count", str(count)]
    torch_args += ["--epochs", str(epochs), "--batch-size", str(batch), "--channels-last"]
    out = {}
    for mixed in (False, True):
        for jit in (False, True):
            name = "kcnn" + (" mixed precision" if mixed else "") + (" XLA" if jit else "")
            cmd = [PY, "-c", KCNN_RUN, arch, str(count), str(epochs), str(batch)]
            out[name] = cmd + [str(int(mixed)), str(int(jit))]
        for compiled in (False, True):
            name = (
                "pytorch"
                + (" compiled" if compiled else "")
                + (" mixed precision" if mixed else "")
            )
            flags = (["--compile"] if compiled else []) + (["--mixed-precision"] if mixed else [])
            out[name] = [PY, str(HERE / "baseline_torch.py"), *torch_args, *flags]
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="tiny sizes: checks the script only")
    parser.add_argument("--allow-cpu", action="store_true", help="run even without a GPU")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    gpus = gpu_count()
    if not gpus and not args.allow_cpu:
        result = {"skipped": "no GPU visible to TensorFlow"}
        print(json.dumps(result))
        return result
    # A batch that fills an accelerator: 1,024 images at 32×32 keeps a modern GPU's cores busy
    # for simple-cnn and ResNet-18 without approaching its memory; --quick: a few steps on a CPU.
    count, epochs, batch = (256, 2, 32) if args.quick else (20_000, 3, 1024)
    features_count, features_batch = (64, 16) if args.quick else (5_000, 256)
    rng = random.Random(args.seed)
    result = {"gpus": gpus, "quick": args.quick, "images": count, "epochs": epochs, "batch": batch}
    for arch in ("simple-cnn", "resnet18"):
        contestants = training_contestants(arch, count, epochs, batch)
        order = list(contestants)
        rng.shuffle(order)
        runs = {name: attempt(contestants[name]) for name in order}
        for name, r in runs.items():  # a CPU build of PyTorch would compare CPU with GPU
            if gpus and name.startswith("pytorch") and r.get("device", "cuda") == "cpu":
                r["error"] = "PyTorch ran on the CPU: install a CUDA build of torch"
        result[arch] = {"order": order, "contestants": {n: runs[n] for n in contestants}}
        print(f"  {arch} done", file=sys.stderr)
    features = {}
    for mixed in (False, True):
        suffix = " mixed precision" if mixed else ""
        features["kcnn" + suffix] = [PY, "-c", FEATURES_KCNN, str(features_count), str(int(mixed))]
        features["keras by hand" + suffix] = [
            PY, "-c", FEATURES_KERAS, str(features_count), str(features_batch), str(int(mixed)),
        ]  # fmt: skip
    order = list(features)
    rng.shuffle(order)
    runs = {name: attempt(features[name]) for name in order}
    result["mobilenetv2 features at 224"] = {
        "images": round(features_count * 0.8),
        "order": order,
        "contestants": {n: runs[n] for n in features},
    }
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
