"""What `kcnn show`, `kcnn runs` and `kcnn predict` print: tables with headers and rounded figures
(`--json` at full precision); predict's exit status with an unreadable image, its progress, and its
warning for an image unlike the run's training images; summary.txt whatever the terminal."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def _main(*args) -> int:
    from kcnn.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory):
    """LeNet-5 on the whole of `digits` for one epoch, trained as from a 60-column terminal whose
    output goes to a pipe (pytest captures it)."""
    out = tmp_path_factory.mktemp("runs")
    saved = {k: os.environ.get(k) for k in ("COLUMNS", "KERAS_HOME")}
    os.environ["COLUMNS"] = "60"
    os.environ["KERAS_HOME"] = str(tmp_path_factory.mktemp("keras_home"))
    try:
        assert _main("train", "lenet5", "--dataset", "digits", "--epochs", "1", "--out", out) == 0
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


@pytest.fixture(scope="module")
def pictures(digits_run, tmp_path_factory):
    """Test images of the run as PNG files, the first one inverted (black on white), and a photo."""
    from matplotlib import cbook

    from kcnn.use import predict

    folder = tmp_path_factory.mktemp("pictures")
    images = predict.load(digits_run).labelled("test").images[:6]
    ordinary = []
    for i, image in enumerate(images):
        ordinary.append(folder / f"test{i}.png")
        Image.fromarray(image[..., 0]).save(ordinary[-1])
    inverted = folder / "inverted.png"
    Image.fromarray(255 - images[0][..., 0]).save(inverted)
    photo = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return {"ordinary": ordinary, "inverted": inverted, "photo": photo}


# --- summary.txt ---------------------------------------------------------------------------------


def test_summary_txt_keeps_every_column_at_60_columns_and_in_a_pipe(digits_run):
    text = (digits_run / "summary.txt").read_text()
    assert "Param #" in text and "Output Shape" in text
    total = json.loads((digits_run / "metrics.json").read_text())["params"]["total"]
    assert f"Total params: {total:,}" in text
    table = [line for line in text.splitlines() if line and line[0] in "┏┃┡│├└"]
    assert table and {len(line) for line in table} == {110}  # the fixed width, nothing cut
    assert "…" not in text


def test_the_summary_does_not_depend_on_the_terminal(monkeypatch):
    from kcnn.models import forms
    from kcnn.models.params import model_summary

    model = forms.build("lenet5", "functional", (32, 32, 1), 10)
    texts = []
    for columns in ("40", "80", "250"):
        monkeypatch.setenv("COLUMNS", columns)
        texts.append(model_summary(model))
    assert texts[0] == texts[1] == texts[2]
    assert "Param #" in texts[0] and "Total params" in texts[0]


# --- kcnn show and kcnn runs ---------------------------------------------------------------------


def test_show_prints_headed_tables_of_rounded_figures(digits_run, cli):
    r = cli("show", digits_run)
    assert r.code == 0, r.err
    text = r.out
    metrics = json.loads((digits_run / "metrics.json").read_text())
    accuracy = metrics["test_accuracy"]
    assert f"{accuracy:.4f} ({accuracy * 100:.1f} %)" in text
    assert f"{metrics['test_loss']:.4g}" in text
    assert repr(metrics["test_loss"]) not in text  # never the raw float
    assert text.count("command") == 1 and "kcnn train" in text
    assert re.search(r"^  setting +value$", text, re.M) and re.search(
        r"^  result +value$", text, re.M
    )
    assert "{'" not in text and "['" not in text and "None" not in text
    assert re.search(r"^  split_sizes +train [\d,]+ · val [\d,]+ · test [\d,]+$", text, re.M)
    assert re.search(r"^  input_shape +32×32×1$", text, re.M)
    assert re.search(r"^  class +precision +recall +f1 +support$", text, re.M)


def test_show_json_keeps_the_records_at_full_precision(digits_run, cli):
    shown = json.loads(cli("show", digits_run, "--json").out)
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert shown["metrics"]["test_loss"] == metrics["test_loss"]
    assert shown["run"]["test_accuracy"] == metrics["test_accuracy"]


def test_runs_gives_durations_as_a_person_writes_them(digits_run, cli):
    from kcnn.runs import readable

    r = cli("runs", digits_run.parent)
    assert r.code == 0, r.err
    seconds = json.loads((digits_run / "metrics.json").read_text())["wall_seconds"]
    assert readable.duration(seconds) in r.out
    assert re.search(r"test acc", r.out)


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0.42, "0.4 s"), (45.2, "45 s"), (72, "1 min 12 s"), (120, "2 min"), (7500, "2 h 05 min")],
)
def test_durations(seconds, shown):
    from kcnn.runs import readable

    assert readable.duration(seconds) == shown


def test_settings_read_as_written():
    from kcnn.runs import readable

    assert (
        readable.value({"train": 3200, "val": 400, "test": 4000})
        == "train 3,200 · val 400 · test 4,000"
    )
    assert readable.value(["/device:CPU:0"], "device_names") == "CPU"
    assert readable.value(None) == "—" and readable.value(True) == "yes"
    assert readable.value([32, 32, 1], "input_shape") == "32×32×1"
    assert readable.value(61706) == "61,706" and readable.value(0.00096) == "0.00096"
    assert readable.figure("best_val_accuracy", 0.90801234) == "0.9080"
    assert readable.figure("test_loss", 0.0830566770000587) == "0.08306"
    assert readable.figure("seconds_per_epoch", 72.4) == "1 min 12 s"


# --- kcnn predict ---------------------------------------------------------------------------------


def test_predict_prints_a_header_and_rounded_probabilities(digits_run, pictures, cli):
    r = cli("predict", digits_run, *pictures["ordinary"][:2], "--top", "2")
    assert r.code == 0, r.err
    header, *rows = r.out.splitlines()
    assert header.split() == ["top", "1", "p", "top", "2", "p", "image"]
    assert len(rows) == 2
    for row, path in zip(rows, pictures["ordinary"][:2], strict=True):
        cells = row.split()
        assert cells[-1] == str(path)
        assert all(re.fullmatch(r"\d\.\d{3}", cells[i]) for i in (1, 3))


def test_predict_json_keeps_full_precision(digits_run, pictures, cli):
    from kcnn.use import predict

    r = cli("predict", digits_run, pictures["ordinary"][0], "--top", "10", "--json")
    (answer,) = json.loads(r.out)
    loaded = predict.load(digits_run)
    image = predict.read_image(pictures["ordinary"][0], loaded.data_shape)
    expected = loaded.predict(image[None])[0]
    for t in answer["top"]:
        assert t["probability"] == float(expected[loaded.info.class_names.index(t["class"])])


def test_predict_with_an_unreadable_image_predicts_the_rest_and_exits_2(
    digits_run, pictures, cli, tmp_path
):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    r = cli("predict", digits_run, pictures["ordinary"][0], bad, pictures["ordinary"][1])
    assert r.code == 2
    assert len(r.out.splitlines()) == 3  # the header and both readable images
    (line,) = r.err.splitlines()
    assert line.startswith("error: ") and "bad.png" in line
    r = cli("predict", digits_run, bad, pictures["ordinary"][0], "--json")
    assert r.code == 2 and len(json.loads(r.out)) == 1


def test_predict_shows_progress_one_line_per_batch_off_a_terminal(
    digits_run, pictures, cli, monkeypatch
):
    from kcnn.use import predict

    monkeypatch.setattr(predict, "PREDICT_BATCH", 2)
    r = cli("predict", digits_run, *pictures["ordinary"][:5])
    assert r.code == 0, r.err
    progress = [line for line in r.err.splitlines() if line.startswith("predicting: ")]
    assert progress[:-1] == [f"predicting: {n}/5 images" for n in (2, 4)], r.err
    assert re.fullmatch(r"predicting: 5/5 images in [\d.]+ s", progress[-1]), r.err
    assert len(r.out.splitlines()) == 6
    quiet = cli("predict", digits_run, *pictures["ordinary"][:2])  # one batch: nothing to show
    assert "predicting" not in quiet.err


# --- images unlike the training data ------------------------------------------------------------


def test_training_records_what_its_images_look_like(digits_run):
    from kcnn.runs.run import RunFolder

    record = digits_run / "training_images.json"
    assert record.stat().st_size < 200_000
    typical = RunFolder(digits_run).typical()
    assert typical.image_shape == (8, 8, 1) and typical.images > 1000


def test_predict_warns_of_an_inverted_digit_and_a_photo_only(digits_run, pictures, cli):
    files = [*pictures["ordinary"], pictures["inverted"], pictures["photo"]]
    r = cli("predict", digits_run, *files, "--json")
    assert r.code == 0, r.err
    far = {Path(a["image"]).name: a["distance"]["far"] for a in json.loads(r.out)}
    assert far == {
        **{p.name: False for p in pictures["ordinary"]},
        "inverted.png": True,
        "grace_hopper.jpg": True,
    }
    warnings = r.err.splitlines()
    assert len(warnings) == 2 and all(w.startswith("warning: ") for w in warnings)
    assert "inverted.png looks unlike the run's training images" in warnings[0]
    assert "grace_hopper.jpg" in warnings[1]


@pytest.mark.parametrize("dataset", ["digits", "mnist-5k"])
def test_few_false_alarms_on_the_held_out_test_split(dataset):
    """The summary of a training split flags at most 2 % of the held-out test split, yet every
    inverted test image and a photo."""
    from matplotlib import cbook

    from kcnn import defaults
    from kcnn.data import datasets, splits, typical
    from kcnn.use.predict import read_image

    data = datasets.load(dataset, None, defaults.SEED, defaults.SHAPES_COUNT)
    parts = splits.make_splits(data, defaults.VAL_SPLIT, defaults.SEED, None, defaults.TEST_SPLIT)
    summary = typical.summarise(parts.x_train)
    assert summary.far(parts.x_test).mean() <= 0.02
    assert summary.far(255 - parts.x_test).all()
    photo = Path(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    assert summary.far(read_image(photo, data.image_shape)[None]).all()


def test_a_run_without_the_record_is_not_checked(digits_run, pictures, cli, tmp_path):
    old = tmp_path / "old-run"
    shutil.copytree(digits_run, old)
    (old / "training_images.json").unlink()
    (old / "training_features.npz").unlink()
    r = cli("predict", old, pictures["inverted"], "--json")
    assert r.code == 0 and r.err == ""
    (answer,) = json.loads(r.out)
    assert answer["distance"] is None and answer["feature_distance"] is None


@pytest.mark.parametrize(
    "plant",
    ["short", "nan", "huge-threshold", "not-json", "link", "shape"],
)
def test_a_damaged_record_is_one_warning_and_the_images_are_still_predicted(
    digits_run, pictures, cli, tmp_path, plant
):
    run = tmp_path / "run"
    shutil.copytree(digits_run, run)
    path = run / "training_images.json"
    record = json.loads(path.read_text())
    if plant == "short":
        record["mean"] = record["mean"][:-1]
    elif plant == "nan":
        record["std"][0] = float("nan")
    elif plant == "huge-threshold":
        record["threshold"] = 1e300
    elif plant == "shape":
        record["image_shape"] = [100000, 8, 1]
    if plant == "not-json":
        path.write_text("{")
    elif plant == "link":
        path.unlink()
        (tmp_path / "elsewhere.json").write_text(json.dumps(record))
        path.symlink_to(tmp_path / "elsewhere.json")
    else:
        path.write_text(json.dumps(record))
    r = cli("predict", run, pictures["inverted"], pictures["ordinary"][0], "--json")
    assert r.code == 0, r.err
    # one line for the record (the features' check may still find the inverted digit far out)
    (line,) = [line for line in r.err.splitlines() if "training_images.json" in line]
    assert line.startswith("warning: ")
    assert "not checked against the training images" in line
    assert [a["distance"] for a in json.loads(r.out)] == [None, None]


def test_too_few_training_images_record_nothing():
    from kcnn.data import typical

    few = np.zeros((typical.MIN_IMAGES - 1, 8, 8, 1), np.uint8)
    assert typical.summarise(few) is None


def test_show_of_a_comparison_tables_its_runs(digits_run, cli, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(digits_run, copy)
    r = cli("compare", digits_run, copy, "--out", tmp_path / "compared", "--json")
    assert r.code == 0, r.err
    text = cli("show", json.loads(r.out)["folder"]).out
    accuracy = json.loads((digits_run / "metrics.json").read_text())["test_accuracy"]
    assert f"best test accuracy  {accuracy:.4f}" in text
    assert re.search(r"^  run +model +status +test acc +duration$", text, re.M)
    assert re.search(rf"^  copy +lenet5 \(sequential\) +completed +{accuracy:.4f} ", text, re.M)
