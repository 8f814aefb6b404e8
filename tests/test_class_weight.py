"""Imbalance: `--class-weight balanced` weighs rare classes up, and every summary states balanced
accuracy and macro-F1 beside accuracy (checked against scikit-learn)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn, refused
from sklearn.metrics import balanced_accuracy_score, f1_score


@pytest.mark.filterwarnings("ignore:y_pred contains classes not in y_true")
@pytest.mark.parametrize("seed", range(6))
def test_balanced_accuracy_and_macro_f1_are_scikit_learns(seed):
    from kcnn.engine.evaluation import class_balanced

    rng = np.random.default_rng(seed)
    classes = 7
    y_true = rng.integers(0, classes - 2 * (seed % 2), 300)  # odd seeds: classes never true
    y_pred = np.where(rng.random(300) < 0.6, y_true, rng.integers(0, classes - (seed % 3), 300))
    found = class_balanced(y_true, y_pred, classes)
    assert found["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y_true, y_pred))
    assert found["macro_f1"] == pytest.approx(
        f1_score(y_true, y_pred, average="macro", zero_division=0)
    )


def _imbalanced(tmp_path: Path) -> Path:
    """digits with class 0 cut to 12 training images and class 1 to 30 (the rest as they are),
    and its own balanced test split."""
    from kcnn.data import datasets

    data = datasets.load("digits", None, 0, 0)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train)
    rng = np.random.default_rng(0)
    test = rng.permutation(len(y))[:300]
    train = np.setdiff1d(np.arange(len(y)), test)
    keep = np.concatenate(
        [train[y[train] == c][: {0: 12, 1: 30}.get(c, 10_000)] for c in range(10)]
    )
    path = tmp_path / "digits-imbalanced.npz"
    np.savez(path, x_train=x[keep], y_train=y[keep], x_test=x[test], y_test=y[test])
    return path


@pytest.fixture(scope="module")
def weighed(tmp_path_factory):
    """The same training on the imbalanced set, with and without --class-weight balanced."""
    tmp = tmp_path_factory.mktemp("weights")
    data = _imbalanced(tmp)
    runs = {}
    for weight in ("none", "balanced"):
        out = tmp / weight
        done = kcnn(
            "train", "lenet5", "--dataset", data, "--epochs", "2", "--class-weight", weight,
            "--out", out, "--json",
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-2000:]
        (runs[weight],) = out.iterdir()
    return data, runs


def test_class_weight_balanced_is_recorded_and_changes_training(weighed):
    from kcnn.data import datasets, splits

    data, runs = weighed
    config = json.loads((runs["balanced"] / "config.json").read_text())
    assert config["class_weight"] == "balanced"
    assert json.loads((runs["none"] / "config.json").read_text())["class_weight"] == "none"
    assert "class_weights" not in json.loads((runs["none"] / "config.json").read_text())
    # n / (classes × count of c), over the run's own training split
    parts = splits.make_splits(datasets.load(str(data), None, 83, 0), 0.2, config["seed"])
    counts = np.bincount(parts.y_train, minlength=10)
    weights = {int(c): w for c, w in config["class_weights"].items()}
    assert weights == pytest.approx(
        {c: len(parts.y_train) / (10 * n) for c, n in enumerate(counts)}
    )
    assert weights[0] > 5 * weights[5]
    losses = [(runs[w] / "history.csv").read_text().splitlines()[1] for w in ("none", "balanced")]
    assert losses[0] != losses[1]  # the same seed, other weights: another training


def test_every_summary_states_balanced_accuracy_and_macro_f1(weighed, tmp_path):
    from kcnn.runs.run import RunFolder

    _, runs = weighed
    run = runs["balanced"]
    metrics = json.loads((run / "metrics.json").read_text())
    answers = RunFolder(run).test_predictions()
    assert metrics["test_balanced_accuracy"] == pytest.approx(
        balanced_accuracy_score(answers.true, answers.predicted)
    )
    assert metrics["test_macro_f1"] == pytest.approx(
        f1_score(answers.true, answers.predicted, average="macro", zero_division=0)
    )
    listed = kcnn("runs", run.parent)
    assert "bal acc" in listed.stdout and "macro-F1" in listed.stdout
    assert f"{metrics['test_macro_f1']:.4f}" in listed.stdout
    compared = kcnn("compare", runs["none"], run, "--out", tmp_path, "--json")
    assert compared.returncode == 0, compared.stderr[-2000:]
    rows = json.loads(compared.stdout)["rows"]
    assert rows[1]["test_balanced_accuracy"] == metrics["test_balanced_accuracy"]
    (folder,) = tmp_path.iterdir()
    assert "test macro-F1" in (folder / "comparison.md").read_text()


def test_bad_class_weight_is_refused(tmp_path):
    done = kcnn("train", "lenet5", "--dataset", "digits", "--class-weight", "inverse", cwd=tmp_path)
    refused(done, "--class-weight", "inverse")
    assert not (tmp_path / "runs").exists()
