"""`kcnn export` to every format (SavedModel, TFLite float32 / float16 / dynamic / int8, ONNX),
each measured against the run on its test split; `kcnn predict --model`; the accuracy gate; int8
calibration from the training split; writes that never follow a planted link; the README's
table of formats from its committed record.

One tiny LeNet-5 on digits is trained once for the module (in-process, a few seconds).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ROOT = Path(__file__).resolve().parent.parent
README_RECORD = ROOT / "docs" / "export-lenet5-digits.json"
TRAIN = ["--epochs", "3", "--limit", "200", "--batch-size", "32"]


def _main(*args) -> int:
    from kcnn.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    old = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    try:
        assert _main("train", "lenet5", "--dataset", "digits", *TRAIN, "--out", out) == 0
    finally:
        if old is None:
            os.environ.pop("KERAS_HOME", None)
        else:
            os.environ["KERAS_HOME"] = old
    (folder,) = out.iterdir()
    return folder


@pytest.fixture
def own_run(run, tmp_path) -> Path:
    """A copy of the run, without the exports other tests made, for a test that must see exactly
    what it wrote."""
    copy = tmp_path / run.name
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("export", "export.json"))
    return copy


@pytest.fixture(scope="module")
def pictures(run, tmp_path_factory) -> list[Path]:
    """The run's first test images as PNG files, as a user would hand them to `kcnn predict`."""
    from kcnn.use import predict

    folder = tmp_path_factory.mktemp("pictures")
    paths = []
    for i, image in enumerate(predict.load(run).test_images(12)):
        paths.append(folder / f"test{i:02d}.png")
        Image.fromarray(image[..., 0]).save(paths[-1])
    return paths


def _one_line_error(r) -> None:
    """One `error:` line, after at most the progress lines of the work done before it."""
    *before, last = r.err.strip().splitlines()
    assert last.startswith("error: ") and "Traceback" not in r.err, r.err
    assert all(line.startswith("export ") and " steps" in line for line in before), r.err


FORMATS = {
    "saved-model": ["--format", "saved-model"],
    "tflite": ["--format", "tflite"],
    "tflite-float16": ["--format", "tflite", "--quantize", "float16"],
    "tflite-dynamic": ["--format", "tflite", "--quantize", "dynamic"],
    "tflite-int8": ["--format", "tflite", "--quantize", "int8"],
    "tflite-int8-io": ["--format", "tflite", "--quantize", "int8", "--int8-io"],
    "onnx": ["--format", "onnx"],
}


@pytest.mark.parametrize("key", list(FORMATS))
def test_each_format_round_trips(run, cli, pictures, key):
    """Exported, measured on the whole test split, recorded; the file predicts the classes (and,
    within the recorded difference, the probabilities) the run's model gives."""
    if key == "onnx":
        pytest.importorskip("onnxruntime", reason="the `export` extra (onnxruntime) is absent")
        pytest.importorskip("tf2onnx", reason="the `export` extra (tf2onnx) is absent")
    from kcnn.use import predict

    r = cli("export", run, *FORMATS[key], "--json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    path = Path(record["path"])
    assert path.exists() and record["kept"] and record["ok"]
    metrics = json.loads((run / "metrics.json").read_text())
    test_images, labels = predict.load(run).test_split()
    # measured on the run's own test split: the run's model scores what training recorded
    assert record["source"] == "test images" and record["images"] == len(labels)
    assert record["run_accuracy"] == pytest.approx(metrics["test_accuracy"], abs=1e-6)
    assert record["latency_ms_batch1"] > 0 and record["throughput_batch32"] > 0
    float32 = key in ("saved-model", "tflite", "onnx")
    if float32:
        assert record["max_abs_diff"] <= 1e-4 and record["argmax_agreement"] == 1.0
        assert record["accuracy"] == record["run_accuracy"]
    else:
        assert record["tolerance"] is None and record["argmax_agreement"] >= 0.9
    # float32 weights take 4 bytes a parameter; float16 2, int8 1 (plus the graph)
    float32_bytes = 4 * predict.load(run).model.count_params()
    share = {"tflite-float16": 0.6, "tflite-dynamic": 0.4, "tflite-int8": 0.4}
    if key != "saved-model":  # a SavedModel keeps its variables beside a graph of them
        assert record["file_bytes"] < share.get(key.removesuffix("-io"), 1.2) * float32_bytes
    recorded = json.loads((run / "export.json").read_text())["exports"][key]
    assert (
        recorded["file_bytes"] == record["file_bytes"]
        and recorded["accuracy"] == record["accuracy"]
    )
    assert (
        "Exported models" in (run / "report.html").read_text()
        and key in (run / "report.html").read_text()
    )

    # the file, loaded again by `predict`, scores what was recorded on the test split...
    exported = predict.load(run, path)
    assert float(np.mean(exported.predict(test_images).argmax(-1) == labels)) == record["accuracy"]
    # ...and `kcnn predict --model` gives the run's classes for the same picture files
    mine = json.loads(cli("predict", run, *pictures, "--top", "3", "--json").out)
    r = cli("predict", run, *pictures, "--top", "3", "--model", path, "--json")
    assert r.code == 0, r.err
    theirs = json.loads(r.out)
    for a, b in zip(mine, theirs, strict=True):
        if float32 or record["argmax_agreement"] == 1.0:
            assert a["top"][0]["class"] == b["top"][0]["class"], (a, b)
        pa = {t["class"]: t["probability"] for t in a["top"]}
        pb = {t["class"]: t["probability"] for t in b["top"]}
        for c in pa.keys() & pb.keys():
            assert abs(pa[c] - pb[c]) <= record["max_abs_diff"] + 1e-6


def test_int8_calibrates_on_training_images_only(own_run, cli, monkeypatch):
    """What the TFLite converter is handed as its representative data set is training images."""
    import tensorflow as tf

    from kcnn.use import export, predict

    seen: list[np.ndarray] = []
    original = tf.lite.TFLiteConverter.from_saved_model

    def spying(*args, **kwargs):
        converter = original(*args, **kwargs)
        convert = converter.convert

        def convert_and_see():
            if converter.representative_dataset is not None:
                seen.extend(np.asarray(b[0])[0] for b in converter.representative_dataset())
            return convert()

        converter.convert = convert_and_see
        return converter

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", staticmethod(spying))
    r = cli("export", own_run, "--format", "tflite", "--quantize", "int8", "--json")
    assert r.code == 0, r.err
    loaded = predict.load(own_run)
    parts = loaded.splits()
    count = min(export.CALIBRATION_IMAGES, len(parts.x_train))
    assert json.loads(r.out)["calibration"] == {"split": "train", "images": count}
    train = np.asarray(loaded.prepare(parts.x_train))
    test = np.asarray(loaded.prepare(parts.x_test))
    assert len(seen) == count

    def nearest(image, pool):
        return float(np.min(np.max(np.abs(pool - image), axis=(1, 2, 3))))

    assert all(nearest(x, train) < 1e-6 for x in seen)  # every one a training image
    # the sample is not the test split's first images (a test set that leaked in)
    assert sum(nearest(x, test) < 1e-6 for x in seen) < len(seen) // 2


def test_accuracy_drop_gate_exits_1_with_the_figures(own_run, cli, monkeypatch):
    """A real drop: int8 calibrated on black images (a bad calibration set) loses most of the
    accuracy; the gate exits 1, names the figures and keeps no file."""
    from kcnn.use import export

    good = export.calibration_sample
    monkeypatch.setattr(export, "calibration_sample", lambda loaded: np.zeros_like(good(loaded)))
    args = ("export", own_run, "--format", "tflite", "--quantize", "int8")
    r = cli(*args, "--max-accuracy-drop", "0.05", "--json")
    assert r.code == 1, r.err
    _one_line_error(r)
    assert "drop of" in r.err and "> --max-accuracy-drop 0.05" in r.err and "not kept" in r.err
    figures = json.loads(r.out)
    assert figures["exit"] == 1 and figures["accuracy_drop"] > 0.05 and figures["kept"] is False
    assert not (own_run / "export" / "model-int8.tflite").exists()
    assert not [p for p in (own_run / "export").iterdir()]  # nothing half-written either
    recorded = json.loads((own_run / "export.json").read_text())["exports"]["tflite-int8"]
    assert recorded["kept"] is False and recorded["accuracy_drop"] > 0.05
    assert "not kept" in (own_run / "report.html").read_text()

    monkeypatch.setattr(export, "calibration_sample", good)
    r = cli(*args, "--max-accuracy-drop", "0.05", "--json")
    assert r.code == 0, r.err  # calibrated on training images: within the bound
    assert (own_run / "export" / "model-int8.tflite").is_file()


def _snapshot(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes() if p.is_file() else b"<dir>"
        for p in sorted(folder.rglob("*"))
    }


@pytest.mark.parametrize("planted", ["export-folder", "model-file", "export-json", "fifo-json"])
def test_a_planted_link_is_refused_with_nothing_written_outside(
    own_run, kcnn_exe, tmp_path, planted
):
    """Through the real executable: one line, exit 2, nothing written or deleted outside, and no
    record or model written inside."""
    outside = tmp_path / "outside"
    (outside / "saved_model").mkdir(parents=True)
    (outside / "saved_model" / "keep.txt").write_text("precious")
    (outside / "model.tflite").write_text("precious")
    (outside / "export.json").write_text('{"precious": true}')
    before = _snapshot(outside)
    if planted == "export-folder":
        (own_run / "export").symlink_to(outside, target_is_directory=True)
    elif planted == "model-file":
        (own_run / "export").mkdir()
        (own_run / "export" / "model.tflite").symlink_to(outside / "model.tflite")
    elif planted == "export-json":
        (own_run / "export.json").symlink_to(outside / "export.json")
    else:
        os.mkfifo(own_run / "export.json")
    inside = sorted(p.name for p in own_run.iterdir())
    r = subprocess.run(
        [*kcnn_exe, "export", str(own_run), "--format", "tflite"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert r.returncode == 2, r.stderr
    assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "link" in r.stderr or "not a regular file" in r.stderr
    assert _snapshot(outside) == before
    assert sorted(p.name for p in own_run.iterdir()) == inside


def test_missing_onnx_extra_is_one_line(run, cli, monkeypatch, tmp_path):
    for name in ("onnxruntime", "tf2onnx", "onnx"):
        monkeypatch.setitem(sys.modules, name, None)  # as if not installed
    r = cli("export", run, "--format", "onnx")
    assert r.code == 2 and "pip install 'kcnn[export]'" in r.err
    _one_line_error(r)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"not read: the runtime is missing")
    r = cli("predict", run, tmp_path, "--model", model)
    assert r.code == 2 and "pip install 'kcnn[export]'" in r.err
    _one_line_error(r)


def test_bad_export_options_exit_2_with_one_line(run, cli, tmp_path, pictures):
    not_a_model = tmp_path / "model.bin"
    not_a_model.write_text("hello")
    cases = [
        ("export", run, "--format", "coreml"),
        ("export", run, "--format", "saved-model", "--quantize", "int8"),
        ("export", run, "--format", "tflite", "--int8-io"),
        ("export", run, "--format", "tflite", "--quantize", "int4"),
        ("export", run, "--format", "tflite", "--max-accuracy-drop", "5"),
        ("predict", run, pictures[0], "--model", tmp_path / "missing.tflite"),
        ("predict", run, pictures[0], "--model", not_a_model),
    ]
    for args in cases:
        r = cli(*args)
        assert r.code == 2, (args, r.err)
        _one_line_error(r)


def test_predict_refuses_a_model_of_another_shape(run, cli, tmp_path, pictures):
    """A TFLite file of a network with another input size is named, not fed wrong pictures."""
    import keras
    import tensorflow as tf

    other = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10)]
    )
    path = tmp_path / "other.tflite"
    path.write_bytes(tf.lite.TFLiteConverter.from_keras_model(other).convert())
    r = cli("predict", run, pictures[0], "--model", path)
    assert r.code == 2 and "28×28×1" in r.err and "32×32×1" in r.err, r.err
    _one_line_error(r)


def test_readme_table_is_the_committed_record():
    """The README's table of formats is what `python -m kcnn.runs.exports` makes of the record
    kept under docs/ (a real `kcnn export` of a small run)."""
    from kcnn.runs import exports

    recorded = exports.read_file(README_RECORD)
    assert {"saved-model", "tflite", "tflite-int8", "onnx"} <= set(recorded)
    table = exports.markdown_table(recorded)
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert table in readme
    made = subprocess.run(
        [sys.executable, "-m", "kcnn.runs.exports", str(README_RECORD)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert made.returncode == 0 and made.stdout.strip() == table
