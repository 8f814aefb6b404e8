"""`--folds K`: K-fold cross-validation as a group of runs (each fold the validation split of one
run, the test split apart), summarised, resumed, compared; its out-of-fold probabilities read
back as untrusted; and `kcnn audit --labels` finding labels planted wrong."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import kcnn, refused
from scipy.stats import t as student

ONE = {"KCNN_SEED_WORKERS": "1"}  # folds one after the other: the same numbers on every machine
TINY = ("--dataset", "digits", "--limit", "120", "--epochs", "1")


def _train(out: Path, *extra) -> dict:
    done = kcnn("train", "lenet5", *TINY, "--folds", "3", "--out", out, "--json", *extra, env=ONE)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def folds_group(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("folds")
    _train(out)
    (group,) = out.iterdir()
    return group


def _record(group: Path) -> dict:
    return json.loads((group / "group.json").read_text())


def _members(group: Path) -> list[Path]:
    return sorted(p for p in group.iterdir() if p.is_dir())


def test_each_fold_is_a_run_validated_on_its_fold_and_the_group_summarises(folds_group):
    from kcnn.runs.run import RunFolder

    record = _record(folds_group)
    assert folds_group.name.endswith("-folds") and record["folds"] == 3
    assert record["status"] == "completed"
    ((name, group),) = record["groups"].items()
    assert name == "lenet5-digits-sequential" and group["folds"] == [1, 2, 3]
    runs = _members(folds_group)
    configs = [json.loads((r / "config.json").read_text()) for r in runs]
    assert [c["fold"] for c in configs] == [1, 2, 3] and {c["folds"] for c in configs} == {3}
    # the folds part the training pool exactly; the test split is the same for all
    held = [RunFolder(r).test_predictions("fold_predictions.npz").index for r in runs]
    pool = np.concatenate(held)
    assert np.unique(pool).size == pool.size == 120
    tests = {RunFolder(r).test_predictions().index.tobytes() for r in runs}
    assert len(tests) == 1
    sizes = [c["split_sizes"] for c in configs]
    assert [s["val"] for s in sizes] == [h.size for h in held]
    assert all(s["train"] + s["val"] == 120 for s in sizes)
    # mean ± 95 % interval over folds of the fold models' test accuracy, and its class-balanced
    # companions
    for metric in ("test_accuracy", "test_balanced_accuracy", "test_macro_f1"):
        x = np.array([json.loads((r / "metrics.json").read_text())[metric] for r in runs])
        half = student.ppf(0.975, 2) * x.std(ddof=1) / math.sqrt(3)
        s = group["metrics"][metric]
        assert s["mean"] == pytest.approx(x.mean(), abs=1e-12)
        assert (s["ci_low"], s["ci_high"]) == pytest.approx((x.mean() - half, x.mean() + half))


def test_out_of_fold_probabilities_gather_every_fold(folds_group):
    from kcnn.engine.evaluation import class_balanced
    from kcnn.runs.run import RunFolder

    oof = RunFolder(folds_group).out_of_fold()
    assert oof.n == 120 and list(oof.index) == sorted(oof.index)
    assert oof.probabilities.shape == (120, 10)
    for run in _members(folds_group):  # each image answered by the model that did not train on it
        fold = RunFolder(run).test_predictions("fold_predictions.npz")
        at = np.searchsorted(oof.index, fold.index)
        assert np.array_equal(oof.true[at], fold.true)
        assert np.array_equal(oof.probabilities[at], fold.probabilities)
    cv = _record(folds_group)["cross_validation"]
    assert cv["images"] == 120 and cv["folds"] == 3
    described = (folds_group / "group.md").read_text()
    assert f"accuracy {cv['accuracy']:.4f}" in described
    assert "| group | folds |" in described and "interval (Student's t) over the folds" in described
    assert cv["accuracy"] == pytest.approx(float(np.mean(oof.correct)))
    assert (
        cv["balanced_accuracy"] == class_balanced(oof.true, oof.predicted, 10)["balanced_accuracy"]
    )


@pytest.mark.slow  # trains two more groups' folds
def test_an_interrupted_folds_group_trains_only_its_missing_folds(folds_group, tmp_path):
    copy = tmp_path / folds_group.name
    shutil.copytree(folds_group, copy)
    record = _record(copy)
    (copy / "group.json").write_text(json.dumps({**record, "status": "interrupted"}))
    (copy / "oof_probabilities.npz").unlink()
    first, lost, last = _members(copy)
    shutil.rmtree(lost)
    stamp = (first / "metrics.json").stat().st_mtime_ns
    done = _train(tmp_path)  # the same command again finishes the group
    again = _record(copy)
    assert done["group"] == str(copy) and again["status"] == "completed"
    assert (first / "metrics.json").stat().st_mtime_ns == stamp  # a finished fold is kept
    assert len(_members(copy)) == 3
    before = record["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]
    after = again["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]
    assert after["values"] == before["values"]  # the fold trained again gives its same numbers
    assert again["cross_validation"] == record["cross_validation"]
    # `kcnn train --resume GROUP` does the same for a group interrupted again
    (copy / "group.json").write_text(json.dumps({**again, "status": "interrupted"}))
    shutil.rmtree(_members(copy)[2])
    done = kcnn("train", "--resume", copy, "--json", env=ONE)
    assert done.returncode == 0, done.stderr[-2000:]
    assert _record(copy)["status"] == "completed" and len(_members(copy)) == 3
    assert _record(copy)["cross_validation"] == record["cross_validation"]


@pytest.mark.slow  # trains a second folds group
def test_two_folds_groups_compare(folds_group, tmp_path):
    other = tmp_path / "other"
    _train(other, "--seed", "7")
    (second,) = other.iterdir()
    done = kcnn("compare", folds_group, second, "--out", tmp_path / "cmp", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    found = json.loads(done.stdout)
    groups = found["groups"]["groups"]
    assert len(groups) == 2 and all(g["n"] == 3 for g in groups.values())
    assert any(t["metric"] == "test_accuracy" for t in found["groups"]["tests"])


@pytest.mark.parametrize(
    ("extra", "words"),
    [
        (("--folds", "1"), ("--folds", "1")),
        (("--folds", "3", "--seeds", "2"), ("--folds 3", "--seeds")),
        (("--folds", "3", "--val-split", "0.3"), ("--val-split 0.3", "--folds 3")),
        (("--folds", "3", "--fold", "4"), ("--fold 4",)),
        (("--fold", "2"), ("--fold 2", "--folds")),
        (("--folds", "9", "--limit", "40"), ("--folds 9", "smallest class")),
    ],
)
def test_bad_folds_are_refused_in_one_line(tmp_path, extra, words):
    done = kcnn("train", "lenet5", "--dataset", "digits", "--epochs", "1", *extra, cwd=tmp_path)
    refused(done, *words)
    assert not (tmp_path / "runs").exists()


def test_check_counts_each_fold_as_a_training(tmp_path):
    plan = tmp_path / "plan.toml"
    plan.write_text(
        '[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 2\nfolds = 4\n'
    )
    done = kcnn("run", plan, "--check", "--json")
    assert done.returncode == 0, done.stderr[-2000:]
    workload = json.loads(done.stdout)["workload"]
    assert workload["trainings"] == 4 and workload["epochs_in_all"] == 8
    plan.write_text(plan.read_text().replace("folds = 4", "folds = 30\nlimit = 40"))
    refused(kcnn("run", plan, "--check"), "--folds 30", "smallest class", alone=False)


# --- the out-of-fold file, read as untrusted -----------------------------------------------------


def _hostile(group: Path, tmp_path: Path, arrays: dict | None = None, size: int = 0) -> Path:
    copy = tmp_path / group.name
    shutil.copytree(group, copy)
    target = copy / "oof_probabilities.npz"
    if arrays is not None:
        np.savez(target, **arrays)
    else:
        target.unlink()
        with open(target, "wb") as f:  # sparse: as large as asked, without writing it
            f.truncate(size)
    return copy


def _arrays(n=120, classes=10, **changes) -> dict:
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(classes), n).astype(np.float16)
    found = {
        "index": np.arange(n),
        "true": rng.integers(0, classes, n).astype(np.int32),
        "predicted": p.argmax(1).astype(np.int32),
        "probabilities": p,
        "held_out": np.asarray(False),
    }
    return {**found, **changes}


@pytest.mark.parametrize(
    ("arrays", "size", "words"),
    [
        (_arrays(probabilities=np.full((7, 10), 0.1, np.float16)), 0, "probabilities"),
        (_arrays(probabilities=np.full((120,), 0.1, np.float16)), 0, "probabilities array"),
        (_arrays(index=np.zeros(120, np.int64)), 0, "positions"),
        (_arrays(probabilities=np.full((120, 10), np.nan, np.float16)), 0, "probability"),
        ({k: v for k, v in _arrays().items() if k != "probabilities"}, 0, "no probabilities"),
        (_arrays(evil=np.arange(3)), 0, "does not write"),
        (None, 300 * 1024 * 1024, "limit"),
    ],
)
def test_hostile_out_of_fold_files_are_refused(folds_group, tmp_path, arrays, size, words):
    copy = _hostile(folds_group, tmp_path, arrays, size)
    done = kcnn("audit", "--labels", copy)
    line = refused(done, "cannot be used")
    assert words in line, line


def test_label_issues_needs_out_of_fold_probabilities(folds_group, tmp_path):
    run = _members(folds_group)[0]
    refused(kcnn("audit", "--labels", run), "no out-of-fold probabilities", "--folds K")


# --- planted label errors ------------------------------------------------------------------------


def _planted(tmp_path: Path, flips: int) -> tuple[Path, set[int]]:
    """digits as an .npz with its own test split (a fifth, drawn at random) and `flips` training
    labels changed at random to another class: the positions changed."""
    from kcnn.data import datasets

    data = datasets.load("digits", None, 0, 0)
    x, y = np.asarray(data.x_train), np.asarray(data.y_train).copy()
    rng = np.random.default_rng(0)
    test = rng.permutation(len(y))[: len(y) // 5]
    train = np.setdiff1d(np.arange(len(y)), test)
    flipped = rng.choice(train.size, flips, replace=False)
    y_train = y[train]
    y_train[flipped] = (y_train[flipped] + rng.integers(1, 10, flips)) % 10
    path = tmp_path / "digits-planted.npz"
    np.savez(path, x_train=x[train], y_train=y_train, x_test=x[test], y_test=y[test])
    return path, set(flipped.tolist())


def _found(tmp_path: Path, flips: int, folds: int, epochs: int, top: int) -> tuple[int, dict]:
    data, planted = _planted(tmp_path, flips)
    out = tmp_path / "runs"
    done = kcnn(
        "train", "lenet5", "--dataset", data, "--epochs", epochs, "--folds", folds, "--out", out,
        env=ONE, timeout=1200,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (group,) = out.iterdir()
    answer = kcnn("audit", "--labels", group, "--top", top, "--json")
    assert answer.returncode == 0, answer.stderr[-2000:]
    found = json.loads(answer.stdout)
    assert len(found["suspects"]) <= top and found["images"] == 1438
    hits = planted & {s["index"] for s in found["suspects"]}
    scores = [s["score"] for s in found["suspects"]]
    assert scores == sorted(scores)  # most likely wrong (lowest p(given label)) first
    return len(hits), found


def test_label_issues_find_planted_flips(tmp_path):
    """50 of digits' 1,438 training labels flipped at random; 3 folds of 8 epochs."""
    hits, found = _found(tmp_path, flips=50, folds=3, epochs=8, top=75)
    assert hits >= 30, (hits, found["flagged"])
    one = found["suspects"][0]
    assert one["name"] == str(one["index"]) and one["given"] != one["likely"]


@pytest.mark.slow
def test_label_issues_find_most_of_100_planted_flips(tmp_path):
    """The issue's target: 100 labels flipped at random, at least 70 among the 150 ranked most
    likely wrong (digits, 5 folds of 15 epochs)."""
    hits, found = _found(tmp_path, flips=100, folds=5, epochs=15, top=150)
    assert hits >= 70, (hits, found["flagged"])


def test_an_image_folder_names_each_image_by_its_file(tmp_path):
    """Folds of an image folder (read from disk, a class weighed up): the out-of-fold answers
    and the suspects name each training image by its file, relative to the folder."""
    from test_streaming import photo_folder

    from kcnn.runs.run import RunFolder

    root = photo_folder(tmp_path / "photos", per_class=10)
    for extra in sorted((root / "bright").iterdir())[6:]:
        extra.unlink()  # 10 dark, 6 bright
    out = tmp_path / "runs"
    done = kcnn(
        "train", "lenet5", "--dataset", root, "--epochs", "1", "--batch-size", "4", "--folds",
        "2", "--class-weight", "balanced", "--out", out, "--json", env=ONE,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (group,) = out.iterdir()
    oof = RunFolder(group).out_of_fold()
    pool = {f"{c}/{p.name}" for c in ("dark", "bright") for p in (root / c).iterdir()}
    assert set(oof.files) <= pool and len(oof.files) == oof.n  # the test split held apart
    configs = [json.loads((r / "config.json").read_text()) for r in _members(group)]
    assert all(c["class_weight"] == "balanced" and "class_weights" in c for c in configs)
    found = json.loads(kcnn("audit", "--labels", group, "--json").stdout)
    assert all(s["name"] in pool for s in found["suspects"])


def test_the_readme_example_is_its_record():
    """The README's label-issues figures are `python docs/label_issues_demo.py`'s rendering of
    its record, never typed by hand."""
    import re
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    block = re.search(
        r"<!-- record:label-issues -->\n(.*?)\n<!-- /record:label-issues -->", readme, re.S
    )
    assert block, "README.md has no <!-- record:label-issues --> block"
    rendered = subprocess.run(
        [sys.executable, root / "docs" / "label_issues_demo.py"], capture_output=True, text=True
    )
    assert rendered.returncode == 0, rendered.stderr
    assert block.group(1) == rendered.stdout.rstrip("\n")
    record = json.loads((root / "docs" / "label-issues-digits.json").read_text())
    assert record["planted_in_top"] >= 70 and record["planted"] == 100 and record["top"] == 150
