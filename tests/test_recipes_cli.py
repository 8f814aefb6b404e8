"""The recipe options through the command line: each epoch's learning rate recorded, the recipe's
rules checked before any work, early stopping reported, and resume exact mid-schedule with
augmentation on."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from kcnn.engine.recipes import learning_rate
from kcnn.runs.records import read_csv, read_json

TINY = ["lenet5", "--dataset", "digits", "--limit", "160", "--batch-size", "32"]
RECIPE = [
    "--optimizer",
    "adamw",
    "--weight-decay",
    "1e-4",
    "--schedule",
    "cosine",
    "--warmup",
    "1",
    "--augment",
    "light",
    "--augment-rotate",
    "8",
    "--label-smoothing",
    "0.1",
    "--reduce-lr-on-plateau",
    "1",
]


def _only_run(out: Path) -> Path:
    (run,) = [p for p in out.iterdir() if p.is_dir()]
    return run


def test_every_epoch_records_the_rate_its_schedule_gives(cli, tmp_path):
    result = cli(
        "train", *TINY, "--epochs", "4", "--schedule", "one-cycle", "--out", tmp_path, "--json"
    )
    assert result.code == 0, result.err
    run = Path(json.loads(result.out)["runs"][0]["run_dir"])
    rates = [float(r["learning_rate"]) for r in read_csv(run / "history.csv")]
    assert rates == pytest.approx([learning_rate(e, 1e-3, 4, "one-cycle") for e in range(4)])
    config = read_json(run / "config.json")
    assert config["schedule"] == "one-cycle" and config["augmentation"]["crop"] == 0.0


@pytest.mark.parametrize(
    "args, message",
    [
        (
            ["--optimizer", "adam", "--momentum", "0.9"],
            "--momentum and --nesterov apply to the sgd",
        ),
        (["--schedule", "cosine", "--warmup", "5", "--epochs", "3"], "--warmup"),
        (["--augment-flip"], "a mirrored digit or slash is another class"),
        (["--schedule", "cosin"], "did you mean 'cosine'"),
        (["--augment", "heavy"], "augmentation policy 'heavy'"),
        (["--label-smoothing", "1"], "--label-smoothing"),
        (["--augment-crop", "0.9"], "--augment-crop"),
    ],
)
def test_bad_recipes_are_refused_before_any_work(cli, tmp_path, args, message):
    result = cli("train", *TINY, *args, "--out", tmp_path / "runs")
    assert result.code == 2, result.err
    assert message in result.err and result.err.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_early_stopping_reports_the_best_epoch_and_restores_it(cli, tmp_path):
    # a learning rate far too high makes the validation loss rise after the first epochs
    result = cli(
        "train",
        *TINY,
        "--epochs",
        "6",
        "--optimizer",
        "sgd",
        "--lr",
        "0.9",
        "--momentum",
        "0.9",
        "--early-stopping",
        "1",
        "--out",
        tmp_path,
        "--json",
    )
    if result.code == 3:
        pytest.skip("diverged outright on this machine's numerics")
    assert result.code == 0, result.err
    metrics = json.loads(result.out)["runs"][0]
    early = metrics["early_stopping"]
    rows = read_csv(Path(metrics["run_dir"]) / "history.csv")
    losses = [float(r["val_loss"]) for r in rows]
    assert early["best_epoch"] == 1 + losses.index(min(losses))
    if early["stopped_early"]:
        assert len(rows) == early["best_epoch"] + 1 and early["restored_best_weights"]


@pytest.mark.slow
def test_resume_mid_schedule_with_augmentation_is_exact(cli, tmp_path, signal_after_epochs):
    reference = cli("train", *TINY, *RECIPE, "--epochs", "4", "--out", tmp_path / "a", "--json")
    assert reference.code == 0, reference.err
    expected = json.loads(reference.out)["runs"][0]

    out = tmp_path / "b"
    watcher = signal_after_epochs(out, 2, signal.SIGINT)
    stopped = cli("train", *TINY, *RECIPE, "--epochs", "4", "--out", out)
    watcher.join()
    assert stopped.code == 130, stopped.err
    run = _only_run(out)
    resumed = cli("train", "--resume", run, "--json")
    assert resumed.code == 0, resumed.err
    got = json.loads(resumed.out)["runs"][0]
    assert got["test_loss"] == expected["test_loss"]
    assert got["test_accuracy"] == expected["test_accuracy"]
    assert read_csv(run / "history.csv") == read_csv(Path(expected["run_dir"]) / "history.csv")
