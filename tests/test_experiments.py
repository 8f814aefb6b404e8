"""Experiment files: every shipped file validates; bad files are one-line errors; a tiny one runs."""

import json
from pathlib import Path

import pytest

EXPERIMENTS = sorted((Path(__file__).parent.parent / "experiments").glob("*.toml"))


def test_there_are_experiment_files():
    assert len(EXPERIMENTS) >= 4


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.name)
def test_shipped_experiments_validate(cli, path):
    result = cli("run", path, "--check", "--json")
    if result.code == 2 and "could not be downloaded" in result.err:
        # --check does what the run does before training, data and weights included: offline,
        # CIFAR-10 and ImageNet weights are missing; the settings themselves passed the schema.
        assert result.err.count("error:") == 1, result.err
        return
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["description"] and plan["runs"]


def write(tmp_path, text):
    path = tmp_path / "exp.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ('[[run]\ncommand = "train"', "not valid TOML"),
        (
            '[[run]]\ncommand = "train"\narch = "lenet5"\nepoch = 3',
            "unknown setting 'epoch' for train: did you mean 'epochs'",
        ),
        ('[[run]]\ncommand = "trian"\narch = "lenet5"', "did you mean 'train'"),
        ('[[run]]\narch = "lenet5"', "has no `command`"),
        (
            'descripton = "x"\n[[run]]\ncommand = "train"\narch = "lenet5"',
            "unknown top-level key 'descripton'",
        ),
        ('description = "nothing to run"', "names no runs"),
        (
            '[[run]]\ncommand = "train"\narch = "lenet5"\nepochs = 0',
            "`epochs` must be a whole number",
        ),
        ('[[run]]\ncommand = "train"', "train needs the setting(s) arch"),
    ],
)
def test_bad_experiment_files(cli, tmp_path, text, message):
    result = cli("run", write(tmp_path, text), "--check")
    assert result.code == 2
    assert message in result.err and len(result.err.strip().splitlines()) == 1


def test_missing_file(cli, tmp_path):
    result = cli("run", tmp_path / "nope.toml")
    assert result.code == 2 and "no such experiment file" in result.err


def test_overrides_apply_and_unknown_overrides_are_refused(cli, tmp_path):
    path = write(tmp_path, '[[run]]\ncommand = "train"\narch = "lenet5"\nepochs = 9')
    plan = json.loads(
        cli("run", path, "--check", "--json", "--set", "epochs=2", "--set", "dataset=shapes").out
    )
    assert plan["runs"][0]["epochs"] == 2 and plan["runs"][0]["dataset"] == "shapes"
    result = cli("run", path, "--check", "--set", "epochz=2")
    assert result.code == 2 and "epochz" in result.err


def test_a_tiny_experiment_runs(cli, tmp_path):
    path = write(
        tmp_path,
        f'''description = "tiny"
[[run]]
command = "train"
arch = "lenet5"
dataset = "shapes"
epochs = 1
limit = 60
batch_size = 16
out = "{tmp_path / "runs"}"
''',
    )
    result = cli("run", path, "--json")
    assert result.code == 0, result.err
    summary = json.loads(result.out)["runs"][0]
    assert summary["command"] == "train" and 0 <= summary["test_accuracy"] <= 1
    assert (Path(summary["run_dirs"][0]) / "metrics.json").is_file()
