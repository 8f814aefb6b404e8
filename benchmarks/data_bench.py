"""`make bench`'s data section (run_all.py --only data): image folders read from disk.

    python benchmarks/data_bench.py [--repeats 3] [--counts 100,1000,5000] [--old-photos 100]

What it generates: 12-megapixel (4032×3024) photo-like JPEGs at quality 90 — a random scene (a
504×378 random image resized bilinearly: shapes and texture at every scale down to 8 pixels)
plus one field of Gaussian sensor noise (sigma 4, at half resolution), about 3.9 MB each, the
size of a phone's JPEG. What DCT-scaled decoding saves depends on the content: it skips the
inverse DCT and colour conversion of the pixels it does not produce, not the entropy decoding of
the file, so a noisier photo (bigger file) gains less; with full-resolution noise of sigma 12
(5.9 MB files) the one-core ratio was 2.5× instead (a trial of this script, not recorded). A pool of
distinct photos is generated once; the folders of 1,000 and 5,000 photos are hard links to the
pool (each link is a file kcnn scans, hashes and decodes on its own; the disk holds only the
pool, and the page cache serves repeated reads of it, which flatters nobody's decoding).

What it measures, each figure with the load average around it:

1. decode-and-resize to 224×224, images/s: kcnn's decoder (JPEG DCT scaling, EXIF, exact
   resize) against a full-decode Pillow loop (`Image.open(f).convert("RGB").resize(...)`,
   timm's ImageFolder path) on one core, and kcnn's thread pool against
   `keras.utils.image_dataset_from_directory` on every core; shuffled repeats, paired ratios;
2. peak resident memory (the child's own ru_maxrss) of `kcnn transfer mobilenetv2 --weights
   none --image-size 96 --epochs 1` over each count of photos;
3. the same run over --old-photos photos with this code and with the code before streaming
   (`--old-commit` of the `--old-root` checkout, unpacked with `git archive` and run by that
   checkout's virtual environment), one after the other: wall seconds and peak memory. The old code holds every photo decoded at full size (the issue measured 17.3 GB for
   100); when the machine has too little memory available for that, fewer photos are used and
   the report says how many;
4. the share of step time spent waiting on input: 1 − (epoch seconds with the same batches
   already in memory) / (epoch seconds with kcnn's pipeline), for LeNet-5 on mnist-5k and
   MobileNetV2 at 224×224 on the photos.

Prints one JSON line at the end (how run_all.py collects it).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import common  # noqa: E402
import protocol  # noqa: E402

PY = common.PYTHON
KCNN = [PY, "-m", "kcnn.cli"]
SIZE = (4032, 3024)
SCENE = (504, 378)  # the random image a scene is resized from: its shapes and texture
NOISE = 4  # sigma of the sensor noise, in grey levels
POOL = 120  # distinct photos generated; bigger folders link to them
DECODE_IMAGES = 24  # photos decoded per contestant and repeat
OLD_ROOT = Path("/work/main")  # a checkout with a virtual environment of the code before
OLD_COMMIT = "3e43b70"  # the last commit before image folders streamed
OLD_MB_PER_PHOTO = 175  # the old code's peak per 12-MP photo (the issue: 17.3 GB for 100)


def load() -> str:
    return "/".join(f"{v:.1f}" for v in os.getloadavg())


def available_mb() -> float:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) / 1024
    return float("nan")


# --- the photos -----------------------------------------------------------------------------------


def make_pool(folder: Path, count: int) -> list[Path]:
    import numpy as np
    from PIL import Image, ImageChops

    folder.mkdir(parents=True, exist_ok=True)
    # one field of sensor noise for all, at half resolution (a phone's noise, demosaiced and
    # denoised, is not independent from pixel to pixel)
    half = (SIZE[0] // 2, SIZE[1] // 2)
    noise = Image.effect_noise(half, NOISE).resize(SIZE).convert("RGB")
    paths = []
    for i in range(count):
        path = folder / f"photo-{i:04d}.jpg"
        if not path.exists():
            rng = np.random.default_rng(1000 + i)
            scene = rng.integers(0, 256, (SCENE[1], SCENE[0], 3), dtype=np.uint8)
            photo = Image.fromarray(scene).resize(SIZE, Image.Resampling.BILINEAR)
            ImageChops.add(photo, noise, 1.0, -128).save(path, quality=90)
        paths.append(path)
    return paths


def photo_folder(root: Path, pool: list[Path], count: int) -> Path:
    """`count` photos in two classes, hard links to the pool (copies where links cannot be)."""
    for i in range(count):
        target = root / ("cats" if i % 2 else "dogs") / f"{i:05d}.jpg"
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(pool[i % len(pool)], target)
        except OSError:
            shutil.copyfile(pool[i % len(pool)], target)
    return root


# --- 1. decoding ----------------------------------------------------------------------------------

DECODE = """
import json, os, sys, time
paths, how = sys.argv[1].split(os.pathsep), sys.argv[2]
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
if how == "pillow":
    import numpy as np
    from PIL import Image
    start = time.perf_counter()
    for p in paths:
        with Image.open(p) as im:
            np.asarray(im.convert("RGB").resize((224, 224), Image.Resampling.BILINEAR))
elif how == "kcnn-1":
    from kcnn.data.decode import decode
    start = time.perf_counter()
    for p in paths:
        decode(p, "RGB", (224, 224))
elif how == "kcnn-pool":
    from kcnn.data.decode import decode, pool
    start = time.perf_counter()
    list(pool().map(lambda p: decode(p, "RGB", (224, 224)), paths))
else:  # keras, on every core or on one
    import tensorflow as tf
    if how == "keras-1":
        tf.config.threading.set_inter_op_parallelism_threads(1)
        tf.config.threading.set_intra_op_parallelism_threads(1)
    import keras
    folder = os.path.dirname(os.path.dirname(paths[0]))
    ds = keras.utils.image_dataset_from_directory(folder, image_size=(224, 224), batch_size=8,
                                                  shuffle=False, verbose=False)
    if how == "keras-1":
        options = tf.data.Options()
        options.threading.private_threadpool_size = 1
        options.threading.max_intra_op_parallelism = 1
        ds = ds.with_options(options)
    start = time.perf_counter()
    for _ in ds:
        pass
seconds = time.perf_counter() - start
print(json.dumps({"images": len(paths), "seconds": seconds, "images_per_second": len(paths) / seconds}))
"""


def decoding(pool: list[Path], repeats: int, scratch: Path) -> dict:
    folder = photo_folder(scratch / "decode", pool, DECODE_IMAGES)
    paths = os.pathsep.join(str(p) for p in sorted(folder.rglob("*.jpg")))

    def contestant(how: str):
        return lambda: {
            **common.last_json(common.run([PY, "-c", DECODE, paths, how])["stdout"]),
            "load": load(),
        }

    names = ("kcnn-1", "pillow", "keras-1", "kcnn-pool", "keras")
    runs = protocol.shuffled_repeats({n: contestant(n) for n in names}, repeats)
    rate = "images_per_second"
    return {
        "images": DECODE_IMAGES,
        "size": list(SIZE),
        "target": [224, 224],
        "cores": os.cpu_count(),
        "median_images_per_second": {n: common.median([r[n][rate] for r in runs]) for n in names},
        "one_core": protocol.paired_ratios(runs, "kcnn-1", ["pillow", "keras-1"], rate),
        "every_core": protocol.paired_ratios(runs, "kcnn-pool", ["keras"], rate),
        "runs": runs,
    }


# --- 2. and 3. whole runs -------------------------------------------------------------------------


def transfer_run(python: str, folder: Path, out: Path, cwd: Path | None, env: dict) -> dict:
    cmd = [python, "-m", "kcnn.cli", "transfer", "mobilenetv2", "--dataset", str(folder),
           "--weights", "none", "--image-size", "96", "--epochs", "1", "--out", str(out)]  # fmt: skip
    before = load()
    r = _run(cmd, cwd=cwd, env=env)
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    metrics = json.loads((run / "metrics.json").read_text())
    return {
        "wall": r["wall"],
        "peak_rss_mib": r["rss_mib"],
        "test_accuracy": metrics.get("test_accuracy"),
        "load_before": before,
        "load_after": load(),
        "available_mib_before": available_mb(),
    }


def _run(cmd, cwd=None, env=None) -> dict:
    """common.run, from another checkout's folder when asked (its own package, not this one)."""
    import subprocess

    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, cwd=cwd,
                                env={**os.environ, **(env or {})})  # fmt: skip
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status):
            err.seek(0)
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{err.read()[-3000:]}")
    return {"wall": wall, "rss_mib": usage.ru_maxrss / 1024}


def memory_runs(pool, counts, scratch: Path, env: dict) -> list[dict]:
    rows = []
    for count in counts:
        folder = photo_folder(scratch / f"photos-{count}", pool, count)
        row = {"photos": count, **transfer_run(PY, folder, scratch / f"runs-{count}", None, env)}
        rows.append(row)
        print(f"  data: {count} photos, peak {row['peak_rss_mib']:.0f} MiB, "
              f"{row['wall']:.0f} s (load {load()})", file=sys.stderr)  # fmt: skip
        shutil.rmtree(folder)
    return rows


def old_code(old_root: Path, commit: str, scratch: Path) -> tuple[Path, Path, dict]:
    """The code before streaming, `commit` of `old_root`'s repository unpacked (read-only: `git
    archive`, nothing written there) into the scratch folder, run by `old_root`'s own virtual
    environment with it first on the path: (python, folder, environment)."""
    import subprocess

    python = old_root / ".venv" / "bin" / "python"
    folder = scratch / f"old-{commit}"
    if not folder.exists():
        folder.mkdir(parents=True)
        archive = subprocess.run(["git", "-C", str(old_root), "archive", commit],
                                 capture_output=True, check=True).stdout  # fmt: skip
        subprocess.run(["tar", "-x", "-C", str(folder)], input=archive, check=True)
    env = {"PYTHONPATH": str(folder)}
    probe = subprocess.run([str(python), "-c", "import kcnn; print(kcnn.__file__)"],
                           capture_output=True, text=True, cwd=folder, env={**os.environ, **env})  # fmt: skip
    if not probe.stdout.strip().startswith(str(folder)):
        raise RuntimeError(
            f"the old code did not come first on the path: {probe.stdout}{probe.stderr}"
        )
    return python, folder, env


def against_old(pool, wanted: int, scratch: Path, old_root: Path, env: dict, commit: str) -> dict:
    python = old_root / ".venv" / "bin" / "python"
    if not python.exists():
        return {"skipped": f"no {python}: the code before streaming is not installed"}
    room = available_mb() - 4096  # what the old code may take, leaving the machine 4 GB
    count = min(wanted, int(room // OLD_MB_PER_PHOTO) // 5 * 5)
    if count < 10:
        return {"skipped": f"{available_mb():.0f} MiB available: too little for the old code"}
    folder = photo_folder(scratch / f"photos-old-{count}", pool, count)
    python, code, old_env = old_code(old_root, commit, scratch)
    new = transfer_run(PY, folder, scratch / "runs-new", None, env)
    old = transfer_run(str(python), folder, scratch / "runs-old", code, old_env)
    return {
        "photos": count,
        "photos_wanted": wanted,
        "old_commit": commit,
        "new": new,
        "old": old,
        "speedup": old["wall"] / new["wall"],
        "memory_ratio": old["peak_rss_mib"] / new["peak_rss_mib"],
    }


# --- 4. waiting on input --------------------------------------------------------------------------

INPUT_WAIT = """
import json, os, sys, time
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import kcnn  # noqa: F401  (its environment defaults)
import tensorflow as tf
from kcnn.data.pipeline import epoch_batches, steps_per_epoch
from kcnn.data.prepared import prepare_data
from kcnn.engine.config import TrainConfig, TransferConfig
from kcnn.engine.trainer import default_input_shape
from kcnn.models import backbones, forms
case, dataset, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
if case == "lenet5":
    config = TrainConfig(arch="lenet5", dataset=dataset, batch_size=128)
    prepared = prepare_data(config, default_input_shape("lenet5", None))
    model = forms.build("lenet5", "sequential", prepared.input_shape, prepared.classes)
    preprocess = None
else:
    from kcnn.commands.transfer import input_shape_for
    config = TransferConfig(["mobilenetv2"], dataset=dataset, batch_size=32, image_size=224)
    prepared = prepare_data(config, input_shape_for(224, 32))
    b = backbones.get("mobilenetv2")
    base = b.build(prepared.input_shape)
    inputs = tf.keras.Input(prepared.input_shape)
    x = tf.keras.layers.GlobalAveragePooling2D()(base(inputs, training=False))
    model = tf.keras.Model(inputs, tf.keras.layers.Dense(prepared.classes, activation="softmax")(x))
    preprocess = b.preprocess_input()
model.compile("adam", "sparse_categorical_crossentropy")
p = prepared.parts
steps = steps_per_epoch(len(p.y_train), config.batch_size)
def stream(first, last):
    return epoch_batches(p.x_train, p.y_train, prepared.input_shape, config.batch_size, 83,
                         first, last, preprocess)
model.fit(stream(0, 1), epochs=1, steps_per_epoch=steps, verbose=0)  # warm-up: tracing
held = stream(0, 1).cache()  # the same batches, prepared, held in memory by tf.data
for _ in held:  # fill it
    pass
timed = {"pipeline": [], "in memory": []}
for _ in range(epochs):  # alternately, one epoch each
    for name, data in (("pipeline", stream(1, 2)), ("in memory", held)):
        start = time.perf_counter()
        model.fit(data, epochs=1, steps_per_epoch=steps, verbose=0)
        timed[name].append(time.perf_counter() - start)
timed = {k: sorted(v)[len(v) // 2] for k, v in timed.items()}
share = 1 - timed["in memory"] / timed["pipeline"]
print(json.dumps({"case": case, "epoch_seconds": timed, "input_wait_share": share,
                  "images": int(len(p.y_train))}))
"""


def input_wait(pool, scratch: Path, repeats: int) -> dict:
    folder = photo_folder(scratch / "photos-wait", pool, 64)
    cases = {
        "LeNet-5 on mnist-5k": ["lenet5", "mnist-5k", "5"],
        "MobileNetV2 at 224×224 on 64 photos": ["mobilenetv2", str(folder), "3"],
    }
    out = {}
    for name, args in cases.items():
        runs = []
        for _ in range(repeats):
            before = load()
            r = common.run([PY, "-c", INPUT_WAIT, *args])
            runs.append(
                {**common.last_json(r["stdout"]), "load_before": before, "load_after": load()}
            )
        out[name] = {
            "input_wait_share": protocol.spread([r["input_wait_share"] for r in runs]),
            "runs": runs,
        }
    return out


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=protocol.MIN_REPEATS)
    parser.add_argument("--counts", default="100,1000,5000")
    parser.add_argument("--old-photos", type=int, default=100)
    parser.add_argument("--old-root", default=str(OLD_ROOT))
    parser.add_argument("--old-commit", default=OLD_COMMIT)
    parser.add_argument("--pool", type=int, default=POOL)
    parser.add_argument("--scratch", default=None, help="where the photos go [a temporary folder]")
    args = parser.parse_args(argv)
    counts = [int(c) for c in args.counts.split(",") if c.strip()]
    scratch = Path(args.scratch or tempfile.mkdtemp(prefix="kcnn-data-bench-"))
    env = {"KCNN_CACHE_DIR": str(scratch / "cache")}
    started = time.perf_counter()
    try:
        print(f"  data: generating {args.pool} photos of {SIZE[0]}×{SIZE[1]}", file=sys.stderr)
        pool = make_pool(scratch / "pool", args.pool)
        generated = time.perf_counter() - started
        result = {
            "photos": {
                "size": list(SIZE),
                "distinct": len(pool),
                "mean_bytes": sum(p.stat().st_size for p in pool) / len(pool),
                "generated_seconds": generated,
                "how": f"a {SCENE[0]}×{SCENE[1]} random image resized bilinearly to "
                f"{SIZE[0]}×{SIZE[1]}, plus one Gaussian noise field (sigma {NOISE}, at half "
                "resolution), JPEG quality 90; folders are hard links to the "
                f"{len(pool)} distinct photos",
            },
            "decoding": decoding(pool, args.repeats, scratch),
        }
        result["memory"] = memory_runs(pool, counts, scratch, env)
        result["against_old"] = against_old(
            pool, args.old_photos, scratch, Path(args.old_root), env, args.old_commit
        )
        result["input_wait"] = input_wait(pool, scratch, args.repeats)
    finally:
        if not args.scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    result["seconds"] = time.perf_counter() - started
    print(json.dumps(result))
    return result


if __name__ == "__main__":
    main()
