"""`kcnn inspect`, `kcnn calibrate`, `kcnn lr-find`: each number checked
against an independent computation, each picture rendered from a real small run."""

from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from kcnn.runs import inspected

# --- the numbers, by hand ----------------------------------------------------------------------

# Five images, two classes. Confidences 0.9, 0.75, 0.7, 0.55, 0.92 fall in the 15 equal-width
# bins 13, 11, 10, 8 and 13: the second image is wrong (confident 0.75 in class 0, truly 1).
P = np.array([[0.9, 0.1], [0.75, 0.25], [0.3, 0.7], [0.45, 0.55], [0.92, 0.08]])
Y = np.array([0, 1, 1, 1, 0])


def test_ece_mce_brier_nll_by_hand():
    from kcnn.use import calibration

    s = calibration.scores(P, Y)
    # bin 13: two right answers at mean confidence 0.91 (gap 0.09, weight 2/5); bins 11, 10, 8
    # one image each: gaps |0 - 0.75|, |1 - 0.7|, |1 - 0.55|
    assert s["ece"] == pytest.approx((2 * 0.09 + 0.75 + 0.3 + 0.45) / 5)
    assert s["mce"] == pytest.approx(0.75)
    assert s["brier"] == pytest.approx((0.02 + 1.125 + 0.18 + 0.405 + 0.0128) / 5)
    assert s["nll"] == pytest.approx(-sum(map(math.log, [0.9, 0.25, 0.7, 0.55, 0.92])) / 5)
    assert s["accuracy"] == pytest.approx(0.8)
    filled = {b: row["images"] for b, row in enumerate(s["bins"]) if row["images"]}
    assert filled == {8: 1, 10: 1, 11: 1, 13: 2}


def test_temperature_scaling_never_worse_than_t1_and_keeps_the_predictions():
    from kcnn.use import calibration

    rng = np.random.default_rng(5)
    for scale in (0.3, 1.0, 6.0):  # under-confident, about right, over-confident logits
        logits = rng.normal(size=(300, 4)) * scale
        y = np.where(rng.random(300) < 0.7, logits.argmax(axis=1), rng.integers(0, 4, 300))
        p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        t = calibration.fit_temperature(p, y)
        after = calibration.with_temperature(p, t)
        assert calibration.nll(after, y) <= calibration.nll(p, y) + 1e-12
        np.testing.assert_array_equal(after.argmax(axis=1), p.argmax(axis=1))
    np.testing.assert_allclose(calibration.with_temperature(P, 1.0), P, atol=1e-6)
    # over-confident logits are cooled (T > 1), under-confident ones sharpened (T < 1)
    assert t > 1.0


def test_confused_pairs_and_per_class_accuracy_by_hand():
    from kcnn.use import errors

    y = np.array([0, 0, 0, 0, 1, 1, 2, 2, 2])
    pred = np.array([0, 1, 1, 2, 1, 0, 2, 2, 0])
    pairs = errors.confused_pairs(y, pred, 3)
    assert [(p["true"], p["predicted"], p["count"]) for p in pairs] == [
        (0, 1, 2),
        (0, 2, 1),
        (1, 0, 1),
        (2, 0, 1),
    ]
    assert pairs[0]["share_of_true"] == pytest.approx(2 / 4)
    worst = errors.per_class_accuracy(y, pred, 3)
    assert [(r["class"], r["accuracy"]) for r in worst] == [(0, 0.25), (1, 0.5), (2, 2 / 3)]


# --- one real small run, shared ------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    """`kcnn train lenet5 --dataset digits --epochs 1 --limit 200 --calibrate`, in this process."""
    from kcnn.cli import main

    out = tmp_path_factory.mktemp("runs")
    args = ["train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "200"]
    try:
        main([*args, "--calibrate", "--out", str(out), "--json"])
    except SystemExit as e:
        assert e.code in (0, None)
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def _png(path):
    from PIL import Image

    with Image.open(path) as im:
        assert im.format == "PNG" and im.size[0] > 100 and im.size[1] > 100
        return im.size


def test_inspect_every_part_of_a_real_run(cli, tiny_run):
    from kcnn.runs.records import read_json

    result = cli("inspect", tiny_run, "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    metrics = read_json(tiny_run / "metrics.json")
    where = inspected.folder(tiny_run)
    # errors: the same test split and model as training's own evaluation (kcnn.engine.evaluation)
    e = answer["errors"]
    assert e["images"] == 200 and e["accuracy"] == pytest.approx(metrics["test_accuracy"])
    matrix = np.array(metrics["confusion_matrix"])
    for pair in e["confused_pairs"]:
        assert pair["count"] == matrix[pair["true"], pair["predicted"]]
        assert pair["share_of_true"] == pytest.approx(pair["count"] / matrix[pair["true"]].sum())
    recalls = {name: s["recall"] for name, s in metrics["per_class"].items()}
    for row in e["per_class_accuracy"]:
        assert row["accuracy"] == pytest.approx(recalls[row["name"]])
    accuracies = [row["accuracy"] for row in e["per_class_accuracy"]]
    assert accuracies == sorted(accuracies)
    assert [t["loss"] for t in e["top_losses"]] == sorted(
        (t["loss"] for t in e["top_losses"]), reverse=True
    )
    assert not e["files"]  # digits has no image files
    # calibration: its NLL is training's test loss (the same cross-entropy); the temperature
    # --calibrate fitted is applied and recorded
    c = answer["calibration"]
    assert c["before"]["nll"] == pytest.approx(metrics["test_loss"], rel=1e-4)
    fitted = read_json(where / inspected.TEMPERATURE_JSON)
    assert c["temperature"] == pytest.approx(fitted["temperature"])
    assert fitted["validation_nll_after"] <= fitted["validation_nll_before"]
    # robustness: every corruption at severity 0 is the clean accuracy, which is training's
    r = answer["robustness"]
    assert r["clean_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert len(r["accuracy"]) == 8 and all(len(a) == 5 for a in r["accuracy"].values())
    errors = [1 - a for accs in r["accuracy"].values() for a in accs]
    assert r["mean_corruption_error"] == pytest.approx(np.mean(errors))
    assert r["relative_mean_corruption_error"] == pytest.approx(
        np.mean(errors) - (1 - r["clean_accuracy"])
    )
    for name in (
        inspected.TOP_LOSSES_PNG,
        inspected.RELIABILITY_PNG,
        inspected.ROBUSTNESS_PNG,
        inspected.CORRUPTIONS_PNG,
    ):
        _png(where / name)
    page = (tiny_run / "report.html").read_text()
    for heading in ("Errors (test set)", "Calibration (test set)", "Robustness (test set)"):
        assert heading in page
    assert page.count("data:image/png") >= 6  # curves, confusion and the four pictures
    assert not list(where.glob(".*"))  # no temporary file left behind


def test_a_corruption_at_severity_0_is_the_clean_accuracy(tiny_run):
    from kcnn.runs.records import read_json
    from kcnn.use import predict, robustness

    loaded = predict.load(tiny_run)
    test = loaded.labelled("test")
    clean = read_json(tiny_run / "metrics.json")["test_accuracy"]
    for name in robustness.CORRUPTIONS:
        accuracy = robustness.accuracy_under(loaded, test.images, test.labels, name, 0, 83)
        assert accuracy == pytest.approx(clean)


def test_inspect_limit_and_one_part(cli, tiny_run):
    args = ("inspect", tiny_run, "--robustness", "--limit", "40", "--draws", "2", "--json")
    result = cli(*args)
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    assert set(answer) == {"run", "robustness"} and answer["robustness"]["images"] == 40
    r = answer["robustness"]
    assert r["draws"] == 2 and len(r["accuracy_draws"]["gaussian_noise"][0]) == 2
    assert len(r["accuracy_draws"]["contrast"][0]) == 1  # not random: one draw is all there is
    again = json.loads(cli(*args).out)
    assert again["robustness"]["accuracy_draws"] == r["accuracy_draws"]  # seeded
    shown = cli("inspect", tiny_run, "--robustness", "--limit", "40", "--draws", "2")
    assert "mean ± SD of 2 draws" in shown.out and "rotation (kcnn)" in shown.out
    assert "gaussian_blur (CIFAR-10-C)" in shown.out


def test_predict_uses_the_calibrated_probabilities_and_says_so(cli, tiny_run, tmp_path):
    from PIL import Image

    from kcnn.use import calibration, predict

    loaded = predict.load(tiny_run)
    image = loaded.labelled("test").images[0]
    Image.fromarray(image[..., 0]).save(tmp_path / "digit.png")
    result = cli("predict", tiny_run, tmp_path / "digit.png", "--top", "10", "--json")
    assert result.code == 0, result.err
    (answer,) = json.loads(result.out)
    t = calibration.read_temperature(tiny_run)
    assert answer["calibration_temperature"] == pytest.approx(t)
    expected = calibration.with_temperature(loaded.predict(image[None]), t)[0]
    for row in answer["top"]:
        index = loaded.info.class_names.index(row["class"])
        assert row["probability"] == pytest.approx(float(expected[index]), abs=1e-5)
    text = cli("predict", tiny_run, tmp_path / "digit.png").out
    assert text.startswith("calibrated probabilities (temperature scaling, T = ")


def test_calibrate_records_before_and_after(cli, tiny_run):
    result = cli("calibrate", tiny_run, "--json")
    assert result.code == 0, result.err
    c = json.loads(result.out)["calibration"]
    fit = c["fit"]
    assert fit["validation_nll_after"] <= fit["validation_nll_before"]
    assert fit["test_nll_before"] == pytest.approx(c["before"]["nll"])
    assert fit["test_ece_after"] == pytest.approx(c["after"]["ece"])


# --- image folders: each test image's file ----------------------------------------------------


def test_image_folder_runs_name_the_files_of_misclassified_images(cli, tmp_path):
    """An image-folder data set: every test image's path is the file it was read from (its pixels
    and its class folder), and misclassified.csv lists the misclassified ones."""
    from PIL import Image
    from sklearn.datasets import load_digits

    from kcnn.runs.records import read_csv
    from kcnn.use import predict

    digits = load_digits()
    data = tmp_path / "data"
    names = {0: "d0", 1: "d1", 7: "=d7"}  # a class name a spreadsheet would run as a formula
    for label, folder in names.items():
        (data / folder).mkdir(parents=True)
        for k, image in enumerate(digits.images[digits.target == label][:20]):
            Image.fromarray(np.uint8(image * 15)).save(data / folder / f"{k:02d}.png")
    args = ["train", "lenet5", "--dataset", data, "--epochs", "1", "--out", tmp_path / "runs"]
    assert cli(*args).code == 0
    (run,) = (tmp_path / "runs").iterdir()
    loaded = predict.load(run)
    test = loaded.labelled("test")
    assert test.paths is not None and len(test.paths) == len(test) == 12
    for image, label, path in zip(test.images, test.labels, test.paths, strict=True):
        np.testing.assert_array_equal(np.asarray(Image.open(path))[..., None], image)
        assert path.split("/")[-2] == loaded.label(int(label))
    val = loaded.labelled("val")
    assert not set(val.paths) & set(test.paths)
    result = cli("inspect", run, "--errors", "--json")
    assert result.code == 0, result.err
    e = json.loads(result.out)["errors"]
    rows = read_csv(inspected.folder(run) / inspected.MISCLASSIFIED_CSV)
    assert len(rows) == e["misclassified"]
    for row in rows:
        assert row["file"] in test.paths and row["true"] != row["predicted"]
        assert {row["true"], row["predicted"]} <= {"d0", "d1", "'=d7"}  # escaped, never run
    assert any("'=d7" in (row["true"], row["predicted"]) for row in rows)
    # the folder changed since training: its split cannot be trusted to be the run's
    (data / "=d7" / "05.png").unlink()
    result = cli("inspect", run, "--errors")
    assert result.code == 2 and "not the data this run trained on" in result.err


def test_inspect_a_subclassed_run(cli, tmp_path):
    """A subclassed model (its layers are no graph): the same numbers as training's evaluation."""
    from kcnn.runs.records import read_json

    args = ["train", "simple-cnn", "--api", "subclassed", "--dataset", "shapes"]
    assert cli(*args, "--shapes-count", "120", "--epochs", "1", "--out", tmp_path).code == 0
    (run,) = tmp_path.iterdir()
    result = cli("inspect", run, "--errors", "--calibration", "--json")
    assert result.code == 0, result.err
    answer, metrics = json.loads(result.out), read_json(run / "metrics.json")
    assert answer["errors"]["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert answer["calibration"]["before"]["nll"] == pytest.approx(metrics["test_loss"], rel=1e-4)
    _png(inspected.folder(run) / inspected.TOP_LOSSES_PNG)


# --- lr-find -------------------------------------------------------------------------------


def test_lr_find_sweep_leaves_the_model_and_optimizer_as_they_were():
    import keras

    from kcnn.models import forms
    from kcnn.use import lr_find

    keras.utils.set_random_seed(0)
    model = forms.build("lenet5", "sequential", (32, 32, 1), 10)
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="sparse_categorical_crossentropy")
    rng = np.random.default_rng(0)
    batches = [
        (rng.random((16, 32, 32, 1), dtype=np.float32), rng.integers(0, 10, 16)) for _ in range(12)
    ]
    model.train_on_batch(*batches[0])  # an optimizer with state of its own
    weights = [np.array(v) for v in model.weights]
    state = [np.array(v) for v in model.optimizer.variables]
    curve = lr_find.sweep(model, batches, lr_find.rates(1e-5, 1.0, 12))
    assert len(curve["rates"]) >= 3 and all(np.isfinite(curve["smoothed"]))
    for before, after in zip(weights, model.weights, strict=True):
        np.testing.assert_array_equal(before, np.array(after))
    for before, after in zip(state, model.optimizer.variables, strict=True):
        np.testing.assert_array_equal(before, np.array(after))


def test_lr_find_command_finishes_and_records(cli, tmp_path):
    result = cli(
        "lr-find", "lenet5", "--dataset", "digits", "--limit", "200", "--steps", "30",
        "--out", tmp_path, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    folder = tmp_path / answer["folder"].split("/")[-1]
    record = json.loads((folder / inspected.LR_FIND_JSON).read_text())
    assert record["steps_done"] == len(record["rates"]) > 3
    assert record["settings"]["arch"] == "lenet5" and record["settings"]["limit"] == 200
    assert np.all(np.diff(record["rates"]) > 0)
    assert record["suggestions"] == answer["suggestions"]
    _png(folder / inspected.LR_FIND_PNG)
    assert sorted(p.name for p in tmp_path.iterdir()) == [folder.name]  # no run folder made
    assert "lr-find: step" in result.err  # progress


# --- bad input, as a user meets it --------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["inspect", "no-such-run"], "no-such-run"),
        (["inspect", "no-such-run", "--limit", "0"], "--limit 0"),
        (["inspect", "no-such-run", "--draws", "0"], "--draws 0"),
        (["calibrate", "no-such-run"], "no-such-run"),
        (["lr-find", "lenet5", "--steps", "1"], "--steps 1"),
        (["lr-find", "lenet5", "--start-lr", "1", "--end-lr", "0.1"], "--start-lr"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(kcnn_exe, tmp_path, args, message):
    done = subprocess.run(
        [*kcnn_exe, *args], capture_output=True, text=True, timeout=120, cwd=tmp_path
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert list(tmp_path.iterdir()) == []


# --- a transfer run ------------------------------------------------------------------------------


@pytest.mark.slow  # a MobileNetV2 at 32×32: ~30 s on 2 cores
def test_inspect_a_transfer_run(cli, tmp_path):
    args = ["transfer", "mobilenetv2", "--dataset", "shapes", "--weights", "none"]
    args += ["--epochs", "1", "--shapes-count", "60", "--image-size", "32"]
    assert cli(*args, "--out", tmp_path).code == 0
    (run,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    result = cli("inspect", run, "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    from kcnn.runs.records import read_json

    metrics = read_json(run / "metrics.json")
    assert answer["errors"]["accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert answer["robustness"]["clean_accuracy"] == pytest.approx(metrics["test_accuracy"])
    assert answer["calibration"]["before"]["nll"] == pytest.approx(metrics["test_loss"], rel=1e-3)
    for name in (inspected.TOP_LOSSES_PNG, inspected.RELIABILITY_PNG, inspected.ROBUSTNESS_PNG):
        _png(inspected.folder(run) / name)


def test_a_damaged_record_leaves_its_section_out_not_the_report(tiny_run, tmp_path):
    import shutil

    from kcnn.runs import html

    run = tmp_path / "run"
    shutil.copytree(tiny_run, run)
    (inspected.folder(run) / inspected.ERRORS_JSON).write_text('{"images": ')
    (inspected.folder(run) / inspected.CALIBRATION_JSON).write_text('{"before": 3}')
    page = html.write_report(run).read_text()
    assert "errors.json not shown: " in page  # not JSON
    assert "calibration.json not shown: not a kcnn record" in page
    assert "Learning curves" in page
