"""After training: listing, showing, comparing, predicting, visualising, exporting, report.html.

The runs are trained once for the module (in-process, tiny), then the commands are driven
in-process, plus a few through the real executable for the exit status and the one-line errors.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn
from PIL import Image

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

TINY = ["--epochs", "1", "--limit", "60", "--batch-size", "16"]


def _main(*args) -> int:
    from kcnn.cli import main

    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 0
    return 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A runs folder with a LeNet-5 on digits, a transfer run and a compare-apis comparison (whose
    subclassed form serves as the subclassed run), plus a stray folder and a half-written run."""
    out = tmp_path_factory.mktemp("runs")
    home = tmp_path_factory.mktemp("keras_home")
    old = os.environ.get("KERAS_HOME")
    os.environ["KERAS_HOME"] = str(home)
    try:
        # MNIST's 28×28 is padded to LeNet-5's 32×32; digits' 8×8 (compare-apis) is resized
        assert _main("train", "lenet5", "--dataset", "mnist-5k", *TINY, "--out", out) == 0
        assert (
            _main(
                "transfer",
                "vgg16",
                "--dataset",
                "shapes",
                "--weights",
                "none",
                "--epochs",
                "1",
                "--limit",
                "24",
                "--out",
                out,
            )
            == 0
        )
        assert _main("compare-apis", "lenet5", "--dataset", "digits", *TINY, "--out", out) == 0
    finally:
        if old is None:
            os.environ.pop("KERAS_HOME", None)
        else:
            os.environ["KERAS_HOME"] = old
    found = {p.name: p for p in out.iterdir()}
    (out / "notes").mkdir()
    half = out / "20200101-000000-half"
    half.mkdir()
    comparison = next(p for n, p in found.items() if "compare" in n)
    subclassed = next(comparison.glob("*-subclassed"))
    shutil.copy(subclassed / "config.json", half)
    (half / "metrics.json").write_text('{"status": "comp')  # killed while writing
    return {
        "out": out,
        "sequential": next(p for n, p in found.items() if n.endswith("lenet5-mnist-5k-sequential")),
        "subclassed": subclassed,
        "transfer": next(p for n, p in found.items() if "vgg16" in n),
        "comparison": comparison,
        "half": half,
    }


def _png(path: Path, mode: str, size=(20, 14)) -> Path:
    rng = np.random.default_rng(1)
    if mode == "I;16":
        Image.fromarray(rng.integers(0, 65535, size[::-1], dtype=np.uint16)).save(path)
    else:
        Image.fromarray(rng.integers(0, 255, (*size[::-1], 3), dtype=np.uint8)).convert(mode).save(
            path
        )
    return path


# --- kcnn runs / show ------------------------------------------------------------------------


def test_runs_lists_every_folder_newest_first_and_tolerates_strays(runs, cli):
    r = cli("runs", runs["out"], "--json")
    assert r.code == 0, r.err
    rows = json.loads(r.out)
    by_name = {row["name"]: row for row in rows}
    comparison = by_name[runs["comparison"].name]
    assert comparison["kind"] == "comparison" and comparison["status"] == "comparison"
    subs = [n for n in by_name if n.startswith(runs["comparison"].name + "/")]
    assert len(subs) == 3  # its three forms, listed under it
    assert by_name["notes"]["status"] == "not a run"
    half = by_name[runs["half"].name]  # a record cut short is damaged: kcnn writes atomically
    assert half["status"] == "damaged" and "metrics.json" in half["damage"]
    transfer = by_name[runs["transfer"].name]
    assert transfer["model"] == "vgg16 + seed head" and transfer["command"] == "transfer"
    seq = by_name[runs["sequential"].name]
    assert seq["model"] == "lenet5 (sequential)" and seq["epochs_done"] == 1
    assert seq["epochs_planned"] == 1 and 0 <= seq["test_accuracy"] <= 1
    top = [row for row in rows if "/" not in row["name"]]
    stamps = [row["created"] for row in top if row["name"] != "notes"]
    assert stamps == sorted(stamps, reverse=True)


def test_runs_filters_and_sorts(runs, cli):
    rows = json.loads(cli("runs", runs["out"], "--json", "--model", "vgg").out)
    assert [r["model"] for r in rows] == ["vgg16 + seed head"]
    rows = json.loads(
        cli("runs", runs["out"], "--json", "--status", "completed", "--sort", "accuracy").out
    )
    assert rows and all(r["status"] == "completed" for r in rows)
    top = [r["test_accuracy"] for r in rows if "/" not in r["name"]]
    assert top == sorted(top, reverse=True)
    text = cli("runs", runs["out"]).out
    assert "vgg16 + seed head" in text and "damaged" in text and "not a run" in text


def test_show_prints_settings_and_results(runs, cli):
    r = cli("show", runs["transfer"], "--json")
    assert r.code == 0
    shown = json.loads(r.out)
    assert shown["config"]["backbone"] == "vgg16" and shown["metrics"]["status"] == "completed"
    text = cli("show", runs["sequential"]).out
    assert "\nsettings\n" in text and "per class" in text and "recall" in text


def test_browse_reads_old_and_new_config_keys(tmp_path):
    from kcnn.runs.browse import RunInfo

    (tmp_path / "config.json").write_text(
        json.dumps(
            {"kind": "transfer", "backbone": "resnet50v2", "head": "gap", "dataset": "shapes"}
        )
    )
    info = RunInfo.load(tmp_path)
    assert info.command == "transfer" and info.model_label == "resnet50v2 + gap head"
    assert info.status == "incomplete"
    assert info.data_image_shape == (32, 32, 3)


# --- report.html -------------------------------------------------------------------------------


def test_every_run_and_comparison_has_a_self_contained_report(runs):
    for key in ("sequential", "transfer", "comparison"):
        page = (runs[key] / "report.html").read_text()
        assert "data:image/png;base64," in page
        assert "<script" not in page and "http://" not in page and "https://" not in page
    page = (runs["sequential"] / "report.html").read_text()
    assert "Per class" in page and "precision" in page and "Settings" in page and "Model" in page
    assert "Total params" in page or "params" in page.lower()
    assert "Agreement" in (runs["comparison"] / "report.html").read_text()


def test_reports_link_their_runs_and_show_settings_as_written(runs):
    comparison = runs["comparison"]
    page = (comparison / "report.html").read_text()
    links = re.findall(r'href="([^"]+)"', page)
    assert len(links) == 3 and all(link.endswith("/report.html") for link in links)
    assert all((comparison / link).is_file() for link in links)  # relative, inside the folder
    run = (runs["sequential"] / "report.html").read_text()
    settings = run[run.index("<h2>Settings</h2>") :]
    assert "{&#x27;" not in settings and "[&#x27;" not in settings and ">None<" not in settings
    assert re.search(r"<td>train [\d,]+ · val [\d,]+ · test [\d,]+</td>", settings)
    assert '<div class="table">' in run and 'name="viewport"' in run


# --- compare ----------------------------------------------------------------------------------


def test_compare_any_runs_names_the_settings_that_differ(runs, cli, tmp_path):
    r = cli("compare", runs["sequential"], runs["transfer"], "--out", tmp_path, "--json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    folder = Path(record["folder"])
    for name in (
        "comparison.md",
        "comparison.csv",
        "comparison.json",
        "curves_overlay.png",
        "report.html",
    ):
        assert (folder / name).is_file(), name
    differ = {row["setting"] for row in record["differences"]}
    assert {"dataset", "command", "input_shape"} <= differ
    assert "seed" not in differ  # the same in both
    assert "Settings that differ" in (folder / "comparison.md").read_text()
    assert {row["model"] for row in record["rows"]} == {"lenet5 (sequential)", "vgg16 + seed head"}


# --- predict ----------------------------------------------------------------------------------


def test_predict_reads_any_image_mode_and_size(runs, cli, tmp_path):
    files = [
        _png(tmp_path / f"{m.replace(';', '')}.png", m) for m in ("RGBA", "P", "L", "I;16", "RGB")
    ]
    r = cli("predict", runs["sequential"], *files, "--top", "3", "--json")
    assert r.code == 0, r.err
    results = json.loads(r.out)
    assert len(results) == 5
    for result in results:
        probs = [t["probability"] for t in result["top"]]
        assert len(probs) == 3 and probs == sorted(probs, reverse=True)
        assert all(t["class"] in [str(d) for d in range(10)] for t in result["top"])


def test_predict_matches_the_runs_own_pipeline_on_a_test_image(runs, tmp_path):
    """A data set image saved as PNG and predicted from the file gives the probabilities the
    model gives that image through the training pipeline."""
    from kcnn.data.pipeline import make_dataset
    from kcnn.models import backbones
    from kcnn.use import predict

    for key, fit in (("sequential", "pad"), ("transfer", "none"), ("subclassed", "resize")):
        loaded = predict.load(runs[key])
        assert loaded.info.fit == fit
        image = loaded.test_images(1)[0]
        path = tmp_path / f"{key}.png"
        Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image).save(path)
        (result,) = predict.predict_files(loaded, [path], top=len(loaded.info.class_names))
        # what training fed the model: the tf.data pipeline on the data set's own array
        preprocess = (
            backbones.get(loaded.info.backbone).preprocess_input() if key == "transfer" else None
        )
        batches = make_dataset(
            image[None], np.zeros(1), loaded.input_shape, 1, preprocess=preprocess
        )
        expected = np.asarray(loaded.model.predict(batches, verbose=0))[0]
        got = {t["class"]: t["probability"] for t in result["top"]}
        for i, name in enumerate(loaded.info.class_names):
            assert got[name] == pytest.approx(float(expected[i]), abs=1e-5)


def test_predict_skips_unreadable_images(runs, cli, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_text("not an image")
    good = _png(tmp_path / "good.png", "RGB")
    r = cli("predict", runs["transfer"], bad, good)
    assert r.code == 2 and "bad.png" in r.err and "good.png" in r.out  # not every image read
    assert len(r.err.strip().splitlines()) == 1


# --- visualize --------------------------------------------------------------------------------


@pytest.mark.parametrize("key", ["sequential", "subclassed", "transfer"])
def test_visualize_writes_the_three_pictures(runs, cli, key):
    r = cli("visualize", runs[key], "--json")
    assert r.code == 0, r.err
    shown = json.loads(r.out)
    folder = runs[key] / "visualize"
    for name in ("filters.png", "feature_maps.png", "grad_cam.png"):
        with Image.open(folder / name) as im:
            assert im.size[0] > 100
    assert shown["feature_maps"] and shown["grad_cam"]["layer"] in shown["feature_maps"]
    page = (runs[key] / "report.html").read_text()
    assert "Inside the network" in page and "The pictures below show test image 0 of" in page
    assert shown["image"].startswith("test image 0 of")


def test_grad_cam_for_functional_form_equals_the_sequential_one(runs):
    """The same weights in two forms give the same heat map: the walk through the model is right."""
    from kcnn.use import predict, visualize

    folder = runs["comparison"]
    loaded = {
        form: predict.load(next(folder.glob(f"*-{form}")))
        for form in ("sequential", "functional", "subclassed")
    }
    image = loaded["sequential"].test_images(1)[0]
    cams = {form: visualize.grad_cam(run, image)[0] for form, run in loaded.items()}
    np.testing.assert_allclose(cams["functional"], cams["sequential"], atol=1e-5)
    np.testing.assert_allclose(cams["subclassed"], cams["sequential"], atol=1e-5)


# --- export -----------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["saved-model", "tflite"])
def test_export_checks_the_reloaded_model(runs, cli, fmt):
    r = cli("export", runs["subclassed"], "--format", fmt, "--json")
    assert r.code == 0, r.err
    record = json.loads(r.out)
    assert record["ok"] and record["max_abs_diff"] <= 1e-4 and record["argmax_agreement"] == 1.0
    assert record["source"] == "test images"
    recorded = json.loads((runs["subclassed"] / "export.json").read_text())
    assert recorded["exports"][fmt]["ok"] is True


def test_export_check_fails_when_the_exported_model_differs(runs, tmp_path):
    from kcnn.use import export, predict, runtimes

    loaded = predict.load(runs["sequential"])
    export._saved_model(loaded, tmp_path / "sm")
    exported = runtimes.open_model(tmp_path / "sm").predict
    batch, source = export.check_batch(loaded)

    def reference(x):
        return np.asarray(loaded.model(x, training=False))

    assert export.check(reference, exported, batch, source).ok
    import tensorflow as tf

    reloaded = tf.saved_model.load(str(tmp_path / "sm"))
    bias = next(v for v in reloaded.variables if v.shape.rank == 1 and v.shape[0] == 10)
    bias.assign_add(tf.one_hot(3, 10) * 5.0)  # one weight of the exported copy perturbed

    def perturbed(x):
        return reloaded.serve(tf.constant(x)).numpy()

    result = export.check(reference, perturbed, batch, source)
    assert not result.ok and result.max_abs_diff > 0.1 and "DIFFERS" in result.message()


# --- bad input through the real executable ------------------------------------------------------


def test_bad_input_exits_2_with_one_line(runs, kcnn_exe, tmp_path):
    """Through the real executable (these answer before TensorFlow is imported)."""
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    cases = [
        ("show", tmp_path / "missing"),
        ("predict", runs["out"] / "notes", not_image),
        ("export", runs["sequential"], "--format", "coreml"),
        ("predict", runs["sequential"], not_image, "--top", "0"),
        ("runs", runs["out"], "--sort", "size"),
    ]
    for args in cases:
        r = kcnn(*args, timeout=120)
        assert r.returncode == 2, (args, r.stderr)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, (
            args,
            r.stderr,
        )


def test_bad_model_or_image_exits_2_with_one_line(runs, cli, tmp_path):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(runs["sequential"], corrupt)
    (corrupt / "model.keras").write_bytes(b"PK\x03\x04 not really a zip")
    not_image = tmp_path / "x.png"
    not_image.write_text("hello")
    for args in (
        ("predict", corrupt, not_image),
        ("predict", runs["sequential"], not_image),
        ("visualize", runs["sequential"], "--image", not_image),
        ("export", runs["half"]),
        ("predict", runs["comparison"], not_image),
    ):
        r = cli(*args)
        assert r.code == 2, (args, r.err)
        assert r.err.startswith("error: ") and len(r.err.strip().splitlines()) == 1, (args, r.err)
