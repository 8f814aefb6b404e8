"""Shared by the benchmark scripts: the data every contestant trains on, the machine, medians.

Every contestant (kcnn, plain Keras, plain PyTorch) gets the very same split of the very same
images, drawn by kcnn's own loader and splitter with kcnn's default seed; nothing here imports
TensorFlow, so the PyTorch baseline runs without it in its process.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def load_split(dataset: str, seed: int = 83, shapes_count: int = 3000, limit=None):
    """kcnn's split of `dataset`: (x_train, y_train, x_test, y_test, classes), uint8 images."""
    from kcnn.data import datasets, splits

    data = datasets.load(dataset, None, seed, shapes_count)
    parts = splits.make_splits(data, 0.2, seed, limit, 0.2)
    return parts.x_train, parts.y_train, parts.x_test, parts.y_test, parts.num_classes


def baseline_setup(argv=None):
    """The arguments both hand-written baselines take (the same run as `kcnn train`), and the
    data split they train on: kcnn's own split, so every contestant sees the same images."""
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("arch")
    parser.add_argument("--dataset", default="mnist-5k")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=83)
    parser.add_argument("--shapes-count", type=int, default=3000)
    args = parser.parse_args(argv)
    return args, load_split(args.dataset, args.seed, args.shapes_count)


def as_model_input(x, size: int = 32):
    """uint8 (N, H, W, C) -> float32 0..1 at size×size, zero-padded as kcnn's pipeline pads."""
    import numpy as np

    h, w = x.shape[1:3]
    top, left = (size - h) // 2, (size - w) // 2
    x = np.pad(x, ((0, 0), (top, size - h - top), (left, size - w - left), (0, 0)))
    return x.astype(np.float32) / 255.0


def run(cmd: list[str], env: dict | None = None) -> dict:
    """Run a command; its wall seconds, peak RSS in MiB (of this child alone) and its output."""
    import tempfile

    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(
            cmd,
            stdout=out,
            stderr=err,
            text=True,
            env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
            cwd=ROOT,
        )
        # wait4 reports the resources of this one child, not of all children so far
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(map(str, cmd))} failed ({proc.returncode}):\n{stderr[-3000:]}"
        )
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024, "stdout": stdout, "stderr": stderr}


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "load_before": os.getloadavg(),
    }


def median(values):
    return statistics.median(values) if values else float("nan")


def last_json(text: str) -> dict:
    """The last line of `text` that is a JSON object (how the scripts report to the harness)."""
    for line in reversed(text.strip().splitlines()):
        if line.startswith("{"):
            return json.loads(line)
    raise ValueError(f"no JSON result in:\n{text[-2000:]}")


PYTHON = sys.executable
