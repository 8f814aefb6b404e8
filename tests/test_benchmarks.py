"""The benchmarks compare like with like, and what they publish comes from their records:
every contestant trains the same network on the same split as `kcnn train`; the protocol
shuffles and pairs; README's speed figures are what benchmarks/readme_figures.py makes from
the committed results.json."""

import importlib
import json
import sys
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.insert(0, str(BENCH))

protocol = importlib.import_module("protocol")
readme_figures = importlib.import_module("readme_figures")


def test_readme_figures_are_those_of_the_committed_results():
    results = json.loads(readme_figures.RESULTS.read_text())
    readme = readme_figures.README.read_text()
    assert readme_figures.render(readme, results) == readme
    for name in readme_figures.BLOCKS:
        assert f"<!-- figures:{name} -->" in readme


def test_readme_figures_follow_the_results_they_are_made_from():
    results = json.loads(readme_figures.RESULTS.read_text())
    readme = readme_figures.README.read_text()
    fake = {
        **results,
        "sections": {
            **results.get("sections", {}),
            "scaleout": {
                "date": "then",
                "load_before": "0.5/0.5/0.5",
                "arch": "lenet5",
                "dataset": "mnist-5k",
                "epochs": 4,
                "batch_size": 128,
                "repeats": 3,
                "configurations": {
                    k: {
                        "later_epoch_seconds": t,
                        "first_epoch_extra_seconds": 0.5,
                        "test_accuracy": 0.9,
                    }
                    for k, t in (
                        ("one device", 1.0),
                        ("mirrored, 2 logical CPUs", 1.5),
                        ("mixed precision", 2.5),
                        ("XLA", 1.25),
                    )
                },  # fmt: skip
                "epoch_time_ratios": {
                    k: {"median": v}
                    for k, v in (
                        ("mirrored, 2 logical CPUs", 1.5),
                        ("mixed precision", 2.5),
                        ("XLA", 1.25),
                    )
                },  # fmt: skip
            },
        },
    }
    text = readme_figures.render(readme, fake)
    assert "1.50 s/epoch against 1.00 s on one device" in text


def test_every_repeat_runs_every_contestant_in_a_shuffled_order():
    seen = []
    contestants = {n: (lambda n=n: seen.append(n) or {"x": len(seen)}) for n in "abcd"}
    runs = protocol.shuffled_repeats(contestants, 6, seed=1)
    assert len(runs) == 6 and len(seen) == 24
    assert all(sorted(r["order"]) == list("abcd") for r in runs)
    assert len({tuple(r["order"]) for r in runs}) > 1  # not one fixed order
    with pytest.raises(ValueError):
        protocol.shuffled_repeats(contestants, 2)


def test_ratios_are_paired_within_a_repeat_and_summarised_by_median_and_range():
    runs = [
        {"k": {"v": 2.0}, "b": {"v": 1.0}},
        {"k": {"v": 3.0}, "b": {"v": 2.0}},
        {"k": {"v": 1.0}, "b": {"v": 4.0}},
        {"k": {"v": 1.0}, "b": {"error": "failed"}},  # no figure: no ratio for that repeat
    ]
    r = protocol.paired_ratios(runs, "k", ["b"], "v")["b"]
    assert r["values"] == [2.0, 1.5, 0.25]
    assert (r["median"], r["low"], r["high"]) == (1.5, 0.25, 2.0)
    best = protocol.best_of(runs, ["k", "b"], "v")
    assert [x["v"] for x in best] == [2.0, 3.0, 4.0, 1.0]


def _kcnn_model_and_split(arch, dataset):
    from kcnn.engine.config import TrainConfig
    from kcnn.engine.trainer import default_input_shape, prepare_data
    from kcnn.models import forms

    config = TrainConfig(arch, dataset=dataset)
    prepared = prepare_data(config, default_input_shape(arch, config.image_size))
    model = forms.build(arch, "sequential", prepared.input_shape, prepared.classes)
    return model, prepared


@pytest.mark.parametrize("arch, dataset", [("lenet5", "mnist-5k"), ("simple-cnn", "shapes")])
def test_every_contestant_trains_the_same_network_on_the_same_split(arch, dataset):
    common = importlib.import_module("common")
    baseline_keras = importlib.import_module("baseline_keras")
    model, prepared = _kcnn_model_and_split(arch, dataset)
    x_train, y_train, x_test, y_test, classes = common.load_split(dataset)
    parts = prepared.parts
    for a, b in ((x_train, parts.x_train), (y_train, parts.y_train), (x_test, parts.x_test),
                 (y_test, parts.y_test)):  # fmt: skip
        np.testing.assert_array_equal(a, b)
    xs = common.as_model_input(x_train[:2])
    assert xs.shape[1:] == tuple(prepared.input_shape)
    keras_model = baseline_keras.build(arch, xs.shape[1:], classes)
    assert keras_model.count_params() == model.count_params()
    torch = pytest.importorskip("torch")  # the `bench` extra
    baseline_torch = importlib.import_module("baseline_torch")
    net = baseline_torch.build(arch, xs.shape[-1], classes)
    assert sum(p.numel() for p in net.parameters()) == model.count_params()
    # and it takes the same images: one batch through it gives one row per image and class
    out = net(torch.from_numpy(xs).permute(0, 3, 1, 2).contiguous())
    assert tuple(out.shape) == (2, classes)


def test_results_md_is_exactly_what_the_report_makes_from_results_json():
    """RESULTS.md holds generated figures only: no hand-written text pasted in."""
    report = importlib.import_module("report")
    results = json.loads((BENCH / "results.json").read_text())
    assert report.render(results) == (BENCH / "RESULTS.md").read_text()


def test_the_throughput_section_pairs_each_repeat_and_reports_failures(monkeypatch):
    """The harness's bookkeeping, with contestants that report fixed speeds (no timing here):
    ratios per repeat against the best PyTorch contestant of that repeat, a failed contestant
    recorded and shown, the others still compared."""
    run_all = importlib.import_module("run_all")
    report = importlib.import_module("report")
    speeds = iter([100, 120, 110])  # kcnn's, one per repeat

    def kcnn(arch, dataset, epochs, out):
        return {"contestant": "kcnn", "params": 61706, "images_per_second": next(speeds),
                "first_epoch_images_per_second": 50, "later_images_per_second": 150,
                "test_accuracy": 0.9, "epoch_seconds": [1.0, 0.25, 0.2]}  # fmt: skip

    def baseline(script, args):
        def run():
            if "--compile" in args:
                return {"error": "InductorError: no compiler"}
            speed = {"--channels-last": 80, "--kcnn-settings": 90}.get(args[-1], 50)
            return {"contestant": args[-1], "params": 61706, "images_per_second": speed,
                    "first_epoch_images_per_second": speed, "later_images_per_second": speed,
                    "test_accuracy": 0.9, "device": "cpu"}  # fmt: skip

        return run

    monkeypatch.setattr(run_all, "kcnn_train", kcnn)
    monkeypatch.setattr(run_all, "baseline", baseline)
    monkeypatch.setattr(run_all, "has_torch", lambda: True)
    result = run_all.throughput(3, cases=(("lenet5", "mnist-5k", 3),))
    case = result["lenet5 on mnist-5k"]
    best = case["ratios"]["images_per_second"]["best pytorch"]
    assert best["values"] == [100 / 80, 120 / 80, 110 / 80]  # in the order of the repeats
    assert (best["low"], best["median"], best["high"]) == (1.25, 1.375, 1.5)
    assert case["contestants"]["pytorch compiled"]["errors"] == ["InductorError: no compiler"] * 3
    assert case["kcnn_first_epoch_gap_seconds"]["median"] == pytest.approx(0.775)
    text = "\n".join(report.throughput_section({**result, "load_before": "1/1/1"}, str, 2))
    assert "failed: InductorError: no compiler" in text
    assert "| best pytorch | 1.38 (1.25–1.50) |" in text and "**met**" in text
