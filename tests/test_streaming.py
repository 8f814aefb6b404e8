"""Image folders stream from disk: generated folders of the files phones and scanners make (large
JPEGs with an EXIF rotation, CMYK, 16-bit PNG, palette, greyscale), a truncated file, a FIFO and
a link out, read through the installed `kcnn` as a user meets them; the decoded pixels, labels,
the skipped file's record, the cache, an exact resume mid-epoch, and (slow) the memory bound."""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from kcnn.data import datasets, decode
from kcnn.data.files import FileImages

TIMEOUT = 300


def kcnn(*args, env=None, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


def upright(width: int, height: int) -> np.ndarray:
    """A picture whose top half is bright and bottom half dark, as it should be shown."""
    pixels = np.full((height, width, 3), 30, np.uint8)
    pixels[: height // 2] = 220
    return pixels


def sideways_jpeg(path: Path, width: int = 900, height: int = 1200) -> None:
    """`upright` stored turned a quarter to the left, with the EXIF tag that turns it back (6):
    what a phone held upright writes."""
    stored = Image.fromarray(upright(width, height)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(path, quality=92, exif=exif)


def photo_folder(root: Path, per_class: int = 6, size=(96, 72)) -> Path:
    """Two classes of photo-like JPEGs (dark and bright), `per_class` each."""
    rng = np.random.default_rng(5)
    for name, level in (("dark", 60), ("bright", 190)):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            pixels = np.clip(rng.normal(level, 25, (size[1], size[0], 3)), 0, 255)
            Image.fromarray(pixels.astype(np.uint8)).save(root / name / f"{i:03d}.jpg", quality=90)
    return root


def odd_files(folder: Path) -> dict[str, Path]:
    """One file of each kind a folder of someone's pictures holds, in `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    files = {
        "sideways": folder / "sideways.jpg",
        "cmyk": folder / "cmyk.jpg",
        "sixteen": folder / "sixteen.png",
        "palette": folder / "palette.png",
        "grey": folder / "grey.jpg",
    }
    sideways_jpeg(files["sideways"])
    Image.new("CMYK", (640, 480), (0, 255, 255, 0)).save(files["cmyk"], quality=95)  # red
    Image.fromarray(np.full((40, 50), 128 * 257, np.uint16)).save(files["sixteen"])
    Image.new("RGB", (30, 30), (0, 0, 255)).quantize(4).save(files["palette"])
    Image.new("L", (60, 40), 200).save(files["grey"])
    return files


# --- what each file becomes -----------------------------------------------------------------------


def test_each_kind_of_file_is_decoded_upright_in_the_models_channels(tmp_path):
    files = odd_files(tmp_path)
    sideways = decode.decode(files["sideways"], "RGB", (32, 32))
    assert sideways.shape == (32, 32, 3)
    assert sideways[:12].mean() > 180 and sideways[-12:].mean() < 70  # turned upright
    red = decode.decode(files["cmyk"], "RGB", (16, 16)).reshape(-1, 3).mean(axis=0)
    assert red[0] > 200 and red[1] < 60 and red[2] < 60
    assert np.all(np.abs(decode.decode(files["sixteen"], "L", (8, 8)).astype(int) - 128) <= 1)
    blue = decode.decode(files["palette"], "RGB", (8, 8)).reshape(-1, 3).mean(axis=0)
    assert blue[2] > 200 and blue[0] < 30
    grey = decode.decode(files["grey"], "RGB", (8, 8))
    assert np.all(grey[..., 0] == grey[..., 2]) and abs(int(grey.mean()) - 200) <= 2


def test_a_large_jpeg_is_decoded_at_its_dct_scale(tmp_path, monkeypatch):
    from PIL import JpegImagePlugin

    sideways_jpeg(tmp_path / "big.jpg", 1600, 1200)
    scales = []
    draft = JpegImagePlugin.JpegImageFile.draft

    def spy(self, mode, size):
        result = draft(self, mode, size)
        scales.append(self.decoderconfig[0] if self.decoderconfig else 1)
        return result

    monkeypatch.setattr(JpegImagePlugin.JpegImageFile, "draft", spy)
    small = decode.decode(tmp_path / "big.jpg", "RGB", (100, 75))
    assert scales == [8] and small.shape == (75, 100, 3)  # 1600×1200 / 8 = 200×150 ≥ 100×75
    decode.decode(tmp_path / "big.jpg", "RGB", (1000, 1000))
    assert scales[-1] == 1  # no scale covers the target: a full decode


def test_a_folder_reads_labels_and_headers_without_decoding(tmp_path):
    odd_files(tmp_path / "odd")
    photo_folder(tmp_path / "photos", per_class=2)
    for name, path in odd_files(tmp_path / "scratch").items():
        path.rename(tmp_path / "photos" / ("bright" if name != "grey" else "dark") / path.name)
    data = datasets.load(str(tmp_path / "photos"))
    x = data.x_train
    assert isinstance(x, FileImages) and data.class_names == ["bright", "dark"]
    names = [Path(f).name for f in x.files]
    assert [data.class_names[y] for y in data.y_train] == [Path(f).parent.name for f in x.files]
    sideways = x.folder.headers[names.index("sideways.jpg")]
    assert sideways.orientation == 6 and sideways.size == (900, 1200)  # as shown, not as stored
    pixels = x.at("RGB", (24, 24))[:]
    assert pixels.shape == (len(names), 24, 24, 3) and pixels.dtype == np.uint8


# --- through the installed kcnn -------------------------------------------------------------------


def hostile_folder(root: Path) -> Path:
    """40 photos in two classes, plus a truncated JPEG, a FIFO and a link out of the folder."""
    photo_folder(root, per_class=20)
    good = (root / "dark" / "000.jpg").read_bytes()
    (root / "dark" / "cut.jpg").write_bytes(good[: len(good) // 3])  # its header survives
    os.mkfifo(root / "bright" / "pipe.jpg")
    outside = root.parent / "secret.jpg"
    outside.write_bytes(good)
    (root / "bright" / "link.jpg").symlink_to(outside)
    return root


def test_a_hostile_folder_trains_skipping_and_recording_its_bad_files(tmp_path):
    root = hostile_folder(tmp_path / "photos")
    out = tmp_path / "runs"
    r = kcnn("train", "lenet5", "--dataset", root, "--epochs", "1", "--batch-size", "8",
             "--image-size", "32", "--out", out, env={"KCNN_CACHE_DIR": str(tmp_path / "cache")},
             timeout=240)  # fmt: skip
    assert r.returncode == 0, r.stderr[-2000:]
    lines = r.stderr.splitlines()
    summary = next(line for line in lines if line.startswith("image folder"))
    assert "41 images in 2 classes" in summary and "decoded as 32×32 RGB" in summary
    (note,) = [line for line in lines if line.startswith("note: left out")]
    assert (
        "pipe.jpg (a FIFO (named pipe))" in note and "link.jpg (a link out of the folder)" in note
    )
    (warning,) = [line for line in lines if line.startswith("warning: skipped")]
    assert "cut.jpg" in warning and "Traceback" not in r.stderr
    (run,) = out.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    (skipped,) = metrics["skipped_images"]
    assert skipped["file"] == str(root / "dark" / "cut.jpg") and skipped["when"] == "decode"
    config = json.loads((run / "config.json").read_text())
    assert config["image_shape"] == [32, 32, 3] and config["classes"] == ["bright", "dark"]
    assert sum(config["split_sizes"].values()) == 41


@pytest.mark.slow  # two short trainings in subprocesses: ~1 min on a busy 2-core machine
def test_too_many_undecodable_files_stop_the_run_resumably_until_fixed(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=20)
    originals = {}
    for i in range(3):  # 3 of 40: over the 5 % kcnn skips
        path = root / "dark" / f"{i:03d}.jpg"
        originals[path] = path.read_bytes()
        path.write_bytes(originals[path][: len(originals[path]) // 3])
    out, cache = tmp_path / "runs", {"KCNN_CACHE_DIR": str(tmp_path / "cache")}
    args = ["train", "lenet5", "--dataset", root, "--epochs", "2", "--batch-size", "8",
            "--image-size", "32", "--out", out]  # fmt: skip
    stopped = kcnn(*args, env=cache)
    assert stopped.returncode == 2, stopped.stderr[-2000:]
    error = stopped.stderr.strip().splitlines()[-1]
    assert error.startswith("error: 3 of the 40 image files") and "--resume" in error
    (run,) = out.iterdir()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed" and len(metrics["skipped_images"]) == 3
    again = kcnn("train", "--resume", run, env=cache)  # unchanged: skipped again, stops again
    assert again.returncode == 2 and "3 of the 40" in again.stderr.strip().splitlines()[-1]
    for path, content in originals.items():  # fixed: the run goes on
        path.write_bytes(content)
    fixed = kcnn("train", "--resume", run, env=cache)
    assert fixed.returncode == 0, fixed.stderr[-2000:]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["skipped_images"] == []


@pytest.mark.parametrize("case", ["classes", "unreadable"])
def test_a_refused_folder_says_one_line(tmp_path, case):
    """Its summary line is never printed before the refusal (issue 33)."""
    if case == "classes":
        photo_folder(tmp_path / "d" / "train", per_class=2)
        photo_folder(tmp_path / "d" / "test", per_class=2)
        (tmp_path / "d" / "test" / "dark").rename(tmp_path / "d" / "test" / "dim")
        words = "hold different class folders"
    else:
        photo_folder(tmp_path / "d", per_class=2)
        (tmp_path / "d" / "dark" / "bad.jpg").write_bytes(b"\xff\xd8 cut")
        words = "bad.jpg is not an image"
    r = kcnn("train", "lenet5", "--dataset", tmp_path / "d", "--out", tmp_path / "runs")
    assert r.returncode == 2
    (line,) = r.stderr.strip().splitlines()
    assert line.startswith("error:") and words in line
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def _stop_mid_epoch(args: list, out: Path, env: dict) -> Path:
    """Run `kcnn ARGS --out OUT` and send SIGINT once its first epoch is recorded (the second
    is then under way); the run folder."""
    process = subprocess.Popen(
        [sys.executable, "-m", "kcnn.cli", *map(str, args), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )
    start = time.monotonic()
    try:
        while process.poll() is None and time.monotonic() - start < TIMEOUT:
            history = list(out.glob("*/history.csv"))
            if history and len(history[0].read_text().splitlines()) >= 2:
                process.send_signal(signal.SIGINT)
                break
            time.sleep(0.02)
        _, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 128 + signal.SIGINT, err[-2000:]
    assert "--resume" in err.strip().splitlines()[-1]
    (folder,) = out.iterdir()
    return folder


def _outcome(folder: Path) -> tuple:
    m = json.loads((folder / "metrics.json").read_text())
    return m["status"], m["test_loss"], m["test_accuracy"], (folder / "history.csv").read_text()


@pytest.mark.slow  # three short trainings in subprocesses: ~1.5 min on a busy 2-core machine
def test_a_folder_run_resumed_mid_epoch_ends_as_an_uninterrupted_one(tmp_path):
    root = photo_folder(tmp_path / "photos", per_class=60, size=(160, 120))
    args = ["train", "lenet5", "--dataset", root, "--epochs", "3", "--batch-size", "8",
            "--image-size", "32", "--augment", "light"]  # fmt: skip
    cache = {"KCNN_CACHE_DIR": str(tmp_path / "cache")}
    reference = kcnn(*args, "--cache", "none", "--out", tmp_path / "reference", env=cache)
    assert reference.returncode == 0, reference.stderr[-2000:]
    (expected,) = (tmp_path / "reference").iterdir()
    # stopped in its second epoch, resumed from its disk cache: the same numbers, bit for bit
    folder = _stop_mid_epoch([*args, "--cache", "disk"], tmp_path / "stopped", cache)
    assert list((tmp_path / "cache" / "images").glob("*.pixels"))
    finished = kcnn("train", "--resume", folder, env=cache)
    assert finished.returncode == 0, finished.stderr[-2000:]
    assert _outcome(folder) == _outcome(expected)


# --- the pipeline -------------------------------------------------------------------------------


def test_every_epoch_is_a_permutation_of_seed_and_epoch_and_shards_split_it(tmp_path):
    import tensorflow as tf

    from kcnn.data.pipeline import batch_indices

    count, batch = 23, 5

    def epoch(seed, number, shard=(0, 1)):
        steps = -(-count // batch)
        return [
            batch_indices(tf.constant(number * steps + b), count, batch, seed, shard)[2].numpy()
            for b in range(steps)
        ]

    first = np.concatenate(epoch(83, 0))
    assert sorted(first) == list(range(count))
    assert np.array_equal(first, np.concatenate(epoch(83, 0)))  # a function of (seed, epoch)
    assert not np.array_equal(first, np.concatenate(epoch(83, 1)))
    shards = [epoch(83, 0, (k, 3)) for k in range(3)]
    for b, whole in enumerate(epoch(83, 0)):  # each global batch split among the workers
        parts = np.concatenate([shards[k][b] for k in range(3)])
        assert sorted(parts) == sorted(whole)


def test_a_data_service_dispatcher_and_worker_train_a_folder(tmp_path, cli, monkeypatch):
    import tensorflow as tf

    monkeypatch.setenv("KCNN_CACHE_DIR", str(tmp_path / "cache"))
    root = photo_folder(tmp_path / "photos", per_class=12, size=(64, 48))
    sideways_jpeg(root / "bright" / "sideways.jpg", 90, 120)
    dispatcher = tf.data.experimental.service.DispatchServer()
    address = dispatcher.target.split("://")[1]
    worker = tf.data.experimental.service.WorkerServer(
        tf.data.experimental.service.WorkerConfig(dispatcher_address=address)
    )
    try:
        r = cli("train", "lenet5", "--dataset", root, "--epochs", "2", "--batch-size", "8",
                "--image-size", "32", "--data-service", f"grpc://{address}",
                "--out", tmp_path / "runs")  # fmt: skip
    finally:
        worker.stop()
        dispatcher.stop()
    assert r.code == 0, r.err
    (run,) = (tmp_path / "runs").iterdir()
    config = json.loads((run / "config.json").read_text())
    assert config["input_service"]["dispatcher"] == f"grpc://{address}"
    history = (run / "history.csv").read_text().splitlines()
    assert len(history) == 3


@pytest.mark.slow  # a cluster of two workers and a reference run: ~2 min on 2 busy cores
def test_two_workers_each_decode_their_own_share_of_a_folder(tmp_path):
    from test_distribute import _free_ports, _tf_config

    root = photo_folder(tmp_path / "photos", per_class=40, size=(64, 48))
    # one epoch, each file decoded at most once per process (a memory cache): alone, every file;
    # on a worker, its half of each training batch (and all of validation and test)
    args = ["train", "lenet5", "--dataset", root, "--epochs", "1", "--batch-size", "8",
            "--image-size", "32", "--cache", "memory"]  # fmt: skip
    one = kcnn(*args, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr[-2000:]
    (alone,) = (tmp_path / "one").iterdir()
    ports = _free_ports(2)
    workers = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kcnn.cli",
                *map(str, args),
                "--strategy",
                "multi-worker",
                "--out",
                str(tmp_path / f"worker{i}"),
            ],  # fmt: skip
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "TF_CONFIG": _tf_config(ports, i)},
        )
        for i in range(2)
    ]
    try:
        errors = [w.communicate(timeout=TIMEOUT)[1] for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    assert [w.returncode for w in workers] == [0, 0], errors
    (chief,) = (tmp_path / "worker0").iterdir()
    decoded = {
        name: json.loads((folder / "metrics.json").read_text())["images_decoded"]
        for name, folder in (("alone", alone), ("chief", chief))
    }
    train = json.loads((alone / "config.json").read_text())["split_sizes"]["train"]
    assert decoded["alone"] == 80 and decoded["alone"] - decoded["chief"] >= 0.4 * train, decoded


def test_the_native_decoder_matches_the_files_meaning(tmp_path):
    """What a tf.data service worker decodes: upright, in the model's channels."""
    import tensorflow as tf

    from kcnn.data.streams import native_decoder

    sideways_jpeg(tmp_path / "s.jpg", 90, 120)
    image = native_decoder("RGB", (30, 40))(tf.constant(str(tmp_path / "s.jpg")), 0, 6).numpy()
    assert image.shape == (40, 30, 3)
    assert image[:15].mean() > 180 and image[-15:].mean() < 70


# --- arrays too big for memory ------------------------------------------------------------------


@pytest.mark.parametrize("compressed", [False, True])
def test_an_npz_over_the_memory_budget_trains_to_the_same_numbers(
    tmp_path, cli, monkeypatch, compressed
):
    from kcnn import defaults
    from kcnn.data.disk_rows import DiskRows

    monkeypatch.setenv("KCNN_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(3)
    save = np.savez_compressed if compressed else np.savez
    y = np.arange(120) % 3
    x = (rng.integers(0, 60, (120, 12, 12)) + 80 * y[:, None, None]).astype(np.uint8)
    save(tmp_path / "d.npz", x_train=x[:90], y_train=y[:90], x_test=x[90:], y_test=y[90:])
    args = [
        "train",
        "lenet5",
        "--dataset",
        tmp_path / "d.npz",
        "--epochs",
        "2",
        "--batch-size",
        "16",
    ]

    def trained(out: str):
        r = cli(*args, "--out", tmp_path / out)
        assert r.code == 0, r.err
        (run,) = (tmp_path / out).iterdir()
        m = json.loads((run / "metrics.json").read_text())
        return m["test_loss"], (run / "history.csv").read_text(), m["test_accuracy"]

    in_memory = trained("memory")
    monkeypatch.setattr(defaults, "DATA_MEMORY_SHARE", 1e-12)
    assert isinstance(datasets.load(str(tmp_path / "d.npz")).x_train, DiskRows)
    assert trained("disk") == in_memory


def test_an_idx_file_over_the_memory_budget_is_read_by_rows(tmp_path, monkeypatch):
    import gzip
    import struct

    from kcnn import defaults
    from kcnn.data import formats
    from kcnn.data.disk_rows import DiskRows

    monkeypatch.setenv("KCNN_CACHE_DIR", str(tmp_path / "cache"))
    images = np.random.default_rng(1).integers(0, 256, (7, 5, 4), dtype=np.uint8)
    raw = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 7, 5, 4) + images.tobytes()
    (tmp_path / "x-idx3-ubyte").write_bytes(raw)
    (tmp_path / "x-idx3-ubyte.gz").write_bytes(gzip.compress(raw))
    monkeypatch.setattr(defaults, "DATA_MEMORY_SHARE", 1e-12)
    for name in ("x-idx3-ubyte", "x-idx3-ubyte.gz"):
        read = formats.read_idx(tmp_path / name)
        assert isinstance(read, DiskRows) and np.array_equal(read[:], images)
        assert np.array_equal(read[np.array([5, 1, 2])], images[[5, 1, 2]])
        assert np.array_equal(read.take(np.array([3, 4]))[1], images[4])


# --- memory: flat in the number of images -------------------------------------------------------


def _peak_rss_mb(args: list, env: dict) -> float:
    """Peak resident memory of `kcnn ARGS` in its own process (ru_maxrss of a waited child is
    its own high-water mark: one child at a time here)."""
    script = (
        "import resource, subprocess, sys; "
        "code = subprocess.call(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
    )
    r = subprocess.run(
        [sys.executable, "-c", script, sys.executable, "-m", "kcnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, **env},
    )
    assert r.returncode == 0, r.stderr[-2000:]
    return int(r.stdout.strip().splitlines()[-1]) / 1024


def big_jpegs(root: Path, count: int, size=(2400, 1800)) -> Path:
    """`count` JPEGs of `size` in two classes: copies of two generated photos (decoding cost and
    memory are those of distinct files of that size)."""
    rng = np.random.default_rng(9)
    sources = []
    for level in (70, 180):
        small = rng.integers(level - 50, level + 50, (45, 60, 3)).astype(np.uint8)
        photo = Image.fromarray(small).resize(size, Image.Resampling.BICUBIC)
        path = root.parent / f"source-{level}.jpg"
        photo.save(path, quality=90)
        sources.append(path.read_bytes())
    for i in range(count):
        folder = root / ("a" if i % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"{i:05d}.jpg").write_bytes(sources[i % 2])
    return root


@pytest.mark.slow  # two transfer runs over 4-megapixel JPEGs: ~2 min on a busy 2-core machine
def test_transfer_memory_is_flat_in_the_number_of_images(tmp_path):
    env = {"KCNN_CACHE_DIR": str(tmp_path / "cache")}
    peaks = {}
    for count in (60, 240):
        root = big_jpegs(tmp_path / f"photos-{count}", count)
        peaks[count] = _peak_rss_mb(
            ["transfer", "mobilenetv2", "--weights", "none", "--image-size", "32",
             "--epochs", "1", "--dataset", root, "--out", tmp_path / f"runs-{count}"],
            env,
        )  # fmt: skip
    # the whole decoded folder would be 240 × 2400 × 1800 × 3 bytes = 3.1 GB
    assert peaks[240] < 2500, peaks
    assert peaks[240] <= 1.1 * peaks[60], peaks
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss > 0
