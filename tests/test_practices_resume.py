"""Every practitioners' recipe resumes exactly: a run interrupted by a real SIGINT mid-training
and resumed ends with the history, test loss and test accuracy of an uninterrupted one, bit for
bit (the EMA in the optimizer's state, the averaged epochs' sum in the checkpoint, the keyed
augmentation a function of seed, epoch and batch alone, the teacher's soft labels recomputed from
the very teacher recorded). The time limit's own stop and resume is in test_practices_cli."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from conftest import kcnn

from kcnn.runs.records import read_csv, read_json

BASE = ["lenet5", "--dataset", "digits", "--limit", "160", "--seed", "7"]
EPOCHS = ["--epochs", "6"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teacher")
    result = kcnn("train", *BASE, "--batch-size", "32", "--epochs", "2", "--out", out)
    assert result.returncode == 0, result.stderr
    (folder,) = list(out.iterdir())
    return folder


RECIPES = {
    "ema": ["--ema", "0.9"],
    "randaugment-erasing": ["--augment-randaugment", "2", "--augment-erasing", "0.3"],
    "augmix": ["--augment-augmix", "0.3"],
    "mixup-cutmix": ["--augment-mixup", "0.3", "--augment-cutmix", "1"],
    "average-last": ["--average-last", "3"],
    "tta": ["--tta", "crops"],
    "teacher": ["--teacher", "TEACHER", "--teacher-weight", "0.7"],
    "batch-size-auto": ["--batch-size", "auto"],
}


@pytest.mark.slow
@pytest.mark.parametrize("recipe", list(RECIPES))
def test_an_interrupted_recipe_resumes_exactly(cli, tmp_path, signal_after_epochs, teacher, recipe):
    args = [str(teacher) if a == "TEACHER" else a for a in RECIPES[recipe]]
    batch = [] if "--batch-size" in args else ["--batch-size", "32"]
    reference = cli("train", *BASE, *batch, *EPOCHS, *args, "--out", tmp_path / "a", "--json")
    assert reference.code == 0, reference.err
    expected = json.loads(reference.out)["runs"][0]

    out = tmp_path / "b"
    watcher = signal_after_epochs(out, 2, signal.SIGINT)
    stopped = cli("train", *BASE, *batch, *EPOCHS, *args, "--out", out)
    watcher.join()
    assert stopped.code == 130, stopped.err
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    assert read_json(run / "metrics.json")["status"] == "interrupted"
    resumed = cli("train", "--resume", run, "--json")
    assert resumed.code == 0, resumed.err
    got = json.loads(resumed.out)["runs"][0]
    assert got["test_loss"] == expected["test_loss"]
    assert got["test_accuracy"] == expected["test_accuracy"]
    assert read_csv(run / "history.csv") == read_csv(Path(expected["run_dir"]) / "history.csv")
    for key in ("ema", "average_last", "tta"):  # what each recipe chose and measured
        assert got.get(key) == expected.get(key)
    if recipe == "teacher":
        assert (
            read_json(run / "config.json")["teacher_run"]
            == read_json(Path(expected["run_dir"]) / "config.json")["teacher_run"]
        )
