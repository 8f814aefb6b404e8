"""The practitioners' recipes as a user meets them: bad values refused in one line (options and
experiment-file keys alike), a teacher refused for every way it can be wrong, the time limit's
stop and an exact resume, `--batch-size auto` recorded and replayed, TTA's accuracy with and
without in the report, and `kcnn augment-preview`'s picture."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import kcnn, refused

from kcnn.engine import budget
from kcnn.runs.records import read_csv, read_json

TINY = ["lenet5", "--dataset", "digits", "--limit", "160", "--batch-size", "32"]


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ema", "1"], ["--ema", "above 0 below 1"]),
        (["--ema", "0"], ["--ema"]),
        (["--tta", "flip"], ["--tta flip on digits", "use --tta crops"]),
        (["--tta", "spin"], ["test-time augmentation 'spin'"]),
        (["--time-limit", "soon"], ["--time-limit takes a duration"]),
        (["--time-limit", "1h", "--seeds", "3"], ["--time-limit", "--seeds"]),
        (["--batch-size", "big"], ["--batch-size", "or auto"]),
        (["--batch-size", "auto", "--strategy", "mirrored"], ["--batch-size auto"]),
        (["--average-last", "5", "--epochs", "3"], ["--average-last 5", "at most --epochs"]),
        (["--average-last", "1"], ["--average-last"]),
        (["--ema", "0.9", "--average-last", "2"], ["--ema and --average-last", "use one"]),
        (["--augment-randaugment", "15"], ["--augment-randaugment"]),
        (["--augment-mixup", "0"], ["--augment-mixup"]),
        (["--augment-erasing", "1.5"], ["--augment-erasing"]),
        (["--teacher-weight", "2"], ["--teacher-weight"]),
    ],
)
def test_bad_recipe_values_are_refused_in_one_line(tmp_path, args, words):
    result = kcnn("train", *TINY, "--epochs", "3", *args, "--out", tmp_path)
    refused(result, *words)
    assert not any(tmp_path.iterdir())  # nothing made


def test_transfer_refuses_the_recipes_it_cannot_take(tmp_path):
    result = kcnn("transfer", "vgg16", "--dataset", "digits", "--ema", "0.9", "--out", tmp_path)
    refused(result, "--ema is not available for transfer")


def test_an_experiment_file_key_is_checked_as_the_option_is(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text(
        '[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\naugment_cutmix = -1\n'
    )
    refused(kcnn("run", path, "--check"), "bad.toml", "`augment_cutmix`")
    path.write_text(
        '[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\ntta = "flip"\n'
    )
    refused(kcnn("run", path, "--check"), "bad.toml", "--tta flip on digits")
    path.write_text(
        '[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\ntime_limit = "2 weeks"\n'
    )
    refused(kcnn("run", path, "--check"), "bad.toml", "duration")


def test_the_settings_print_and_replay_as_a_file(tmp_path):
    result = kcnn(
        "train", *TINY, "--ema", "0.99", "--tta", "crops", "--time-limit", "1h30m",
        "--augment-randaugment", "2", "--augment-mixup", "0.2", "--batch-size", "auto",
        "--print-config",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    toml = result.stdout
    for line in ('ema = 0.99', 'tta = "crops"', "time_limit = 5400.0", "augment_randaugment = 2",
                 "augment_mixup = 0.2", 'batch_size = "auto"'):  # fmt: skip
        assert line in toml, line


# --- a teacher, and every way one can be wrong ------------------------------------------------


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("teachers")
    result = kcnn("train", *TINY, "--epochs", "2", "--seed", "5", "--name", "teach", "--out", out)
    assert result.returncode == 0, result.stderr
    return out


def test_a_student_distils_from_a_teacher_named_in_its_out(teacher):
    result = kcnn("train", *TINY, "--epochs", "1", "--seed", "5", "--teacher", "teach",
                  "--teacher-temperature", "2", "--out", teacher, "--json")  # fmt: skip
    assert result.returncode == 0, result.stderr
    run = Path(json.loads(result.stdout)["runs"][0]["run_dir"])
    facts = read_json(run / "config.json")
    (folder,) = [p for p in teacher.iterdir() if p.name.endswith("-teach")]
    assert facts["teacher_run"]["run"] == str(folder.resolve())
    assert len(facts["teacher_run"]["model_sha256"]) == 64 and facts["teacher_run"]["seed"] == 5
    assert facts["teacher_temperature"] == 2.0


@pytest.mark.parametrize(
    "args, words",
    [
        (["--teacher", "no-such-run"], ["no run folder no-such-run"]),
        # each of these runs kcnn twice and loads data before its refusal: the slow suite's
        pytest.param(
            ["--seed", "6", "--teacher", "teach"],
            ["trained on", "test images", "leak"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--dataset", "shapes", "--teacher", "teach"],
            ["knows the classes", "same classes"],
            marks=pytest.mark.slow,
        ),
        pytest.param(
            ["--dataset", "mnist-5k", "--teacher", "teach"], ["other data"], marks=pytest.mark.slow
        ),
    ],
)
def test_a_wrong_teacher_is_refused_in_one_line(teacher, tmp_path, args, words):
    result = kcnn("train", *TINY, "--epochs", "1", "--seed", "5", "--out", tmp_path, *args)
    if "--teacher" in args and args[args.index("--teacher") + 1] == "teach":
        folder = next(p for p in teacher.iterdir() if p.name.endswith("-teach"))
        result = kcnn("train", *TINY, "--epochs", "1", "--seed", "5", "--out", tmp_path,
                      *[folder if a == "teach" else a for a in args])  # fmt: skip
    refused(result, *words, alone=False)
    assert not [p for p in tmp_path.iterdir() if not p.name.startswith(".")]


@pytest.mark.slow  # trains a teacher until its time limit, then a student
def test_an_unfinished_teacher_is_refused(teacher, tmp_path):
    stopped = kcnn("train", *TINY, "--epochs", "50", "--seed", "5", "--time-limit", "1",
                   "--out", tmp_path / "t")  # fmt: skip
    assert stopped.returncode == budget.TimeUp.exit_code, stopped.stderr
    (folder,) = list((tmp_path / "t").iterdir())
    result = kcnn("train", *TINY, "--epochs", "1", "--seed", "5", "--teacher", folder,
                  "--out", tmp_path / "s")  # fmt: skip
    refused(result, "is interrupted, not completed", alone=False)


def test_predict_refuses_a_flip_on_digits(teacher):
    folder = next(p for p in teacher.iterdir() if p.name.endswith("-teach"))
    image = folder / "confusion_matrix.png"
    refused(kcnn("predict", folder, image, "--tta", "flip"), "--tta flip on digits")


# --- the time limit, the batch found, the report -------------------------------------------------


def test_the_time_limit_stops_cleanly_and_the_resume_is_exact(cli, tmp_path, monkeypatch):
    reference = cli("train", *TINY, "--epochs", "3", "--out", tmp_path / "a", "--json")
    assert reference.code == 0, reference.err
    expected = json.loads(reference.out)["runs"][0]

    ends = iter([False, True])  # the second epoch ends with no time left for a third
    monkeypatch.setattr(budget.Clock, "epoch_ends", lambda self: next(ends))
    stopped = cli("train", *TINY, "--epochs", "3", "--time-limit", "1h", "--out", tmp_path / "b")
    assert stopped.code == 75, stopped.err
    assert "time limit 1h reached after 2 of 3 epochs; continue with: kcnn train --resume" in (
        stopped.err
    )
    (run,) = list((tmp_path / "b").iterdir())
    metrics = read_json(run / "metrics.json")
    assert metrics["status"] == "interrupted" and metrics["stop_reason"] == "time limit 1h"
    assert (run / "checkpoint.keras").is_file()
    monkeypatch.undo()

    resumed = cli("train", "--resume", run, "--json")
    assert resumed.code == 0, resumed.err
    got = json.loads(resumed.out)["runs"][0]
    assert (got["test_loss"], got["test_accuracy"]) == (
        expected["test_loss"],
        expected["test_accuracy"],
    )
    assert read_csv(run / "history.csv") == read_csv(Path(expected["run_dir"]) / "history.csv")


def test_batch_size_auto_is_found_once_recorded_and_replayed(cli, tmp_path):
    first = cli("train", *TINY[:-2], "--batch-size", "auto", "--epochs", "1", "--out", tmp_path,
                "--json")  # fmt: skip
    assert first.code == 0, first.err
    assert "--batch-size auto: 128 on CPU" in first.err  # 128 images to train on: all of them
    run = Path(json.loads(first.out)["runs"][0]["run_dir"])
    config = read_json(run / "config.json")
    assert config["batch_size"] == 128 and config["batch_size_search"]["batch_size"] == 128
    assert "CPU" in config["batch_size_search"]["bound"]
    again = cli("run", run / "config.json", "--set", f"out={tmp_path / 'again'}", "--json")
    assert again.code == 0, again.err
    (replayed,) = list((tmp_path / "again").iterdir())
    assert read_json(replayed / "config.json")["batch_size"] == 128
    assert "--batch-size auto" not in again.err  # a number now: nothing searched


def test_the_report_shows_accuracy_with_and_without_tta(cli, tmp_path):
    result = cli("train", *TINY, "--epochs", "1", "--tta", "crops", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    metrics = json.loads(result.out)["runs"][0]
    tta = metrics["tta"]
    assert tta["mode"] == "crops" and 0 <= tta["test_accuracy_without"] <= 1
    report = (Path(metrics["run_dir"]) / "report.html").read_text()
    assert f"<td>test_accuracy</td><td>{metrics['test_accuracy']:.4f} (with TTA crops)" in report
    assert f"<td>test_accuracy_without_tta</td><td>{tta['test_accuracy_without']:.4f}" in report


def test_augment_preview_draws_a_grid_and_refuses_a_bad_file(tmp_path):
    out = tmp_path / "grid.png"
    result = kcnn("augment-preview", "--dataset", "digits", "--augment-randaugment", "2",
                  "--augment-cutmix", "1", "--images", "4", "--epochs-shown", "2", "--out", out)  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert out.read_bytes().startswith(b"\x89PNG")
    refused(kcnn("augment-preview", "--dataset", "digits", "--out", tmp_path / "grid.jpg"), ".png")
    refused(kcnn("augment-preview", "--dataset", "digits", "--augment-flip"), "mirrored")


def test_inspect_with_tta_records_it_and_predicts_with_it(teacher):
    folder = next(p for p in teacher.iterdir() if p.name.endswith("-teach"))
    result = kcnn("inspect", folder, "--errors", "--tta", "crops", "--json")
    assert result.returncode == 0, result.stderr
    errors = json.loads(result.stdout)["errors"]
    assert errors["tta"] == "crops"
    plain = json.loads(kcnn("inspect", folder, "--errors", "--json").stdout)["errors"]
    assert plain["tta"] is None  # the run trained without --tta: its own setting is none
    assert plain["accuracy"] == read_json(folder / "metrics.json")["test_accuracy"]
