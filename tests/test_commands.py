"""One command model: every training command is an object in one registry, and every path
through it is the same — calibration after training in this process, in a child process and in
a sweep's trial; groups are what the user named (two same-recipe groups stay two); a seed that
appears twice in a group counts once, and the output says so; `--check` says how many trainings
a file stands for; a config's state is all fields."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest
from conftest import kcnn

from kcnn.commands import registry
from kcnn.commands.command import Command
from kcnn.engine import config as configs
from kcnn.engine.config import TrainConfig

TINY = ["--dataset", "digits", "--epochs", "1", "--limit", "100"]


# --- the registry and the protocol --------------------------------------------------------------


def test_every_training_command_is_one_object_in_one_registry():
    assert set(registry.COMMANDS) == set(configs.COMMANDS) == {"train", "compare-apis", "transfer"}
    for name, entry in registry.COMMANDS.items():
        assert entry.config is configs.COMMANDS[name] and entry.help and entry.needs
        command = registry.get(name)
        assert isinstance(command, Command) and command.name == name
        assert command.config is entry.config
        assert type(command).start is not Command.start  # each trains in its own way
        assert type(command).resume is not Command.resume
    assert registry.entry("train").resume_options == ("epochs", "time_limit")  # a new budget
    with pytest.raises(Exception, match="did you mean 'train'"):
        registry.get("trian")


def test_the_run_folders_recorder_is_the_interface_the_engine_names():
    from kcnn.engine.recording import RunRecorder
    from kcnn.runs.recorder import RunRecords

    records = RunRecords("train", {"epochs": 1}, {"arch": "lenet5", "api": "sequential"})
    assert isinstance(records, RunRecorder)


def test_every_attribute_of_a_config_is_a_field_and_survives_replace():
    config = TrainConfig.from_settings({"arch": "lenet5", "dataset": "digits"}, source="f.toml")
    config.validate()
    fields = {f.name for f in dataclasses.fields(config)}
    assert set(vars(config)) <= fields
    assert config.source == "f.toml" and config.derived_name
    copy = dataclasses.replace(config, seed=7)
    assert copy.source == "f.toml" and copy.derived_name  # nothing dropped by replace
    named = dataclasses.replace(config, name="mine", derived_name=False)
    assert "name = " in named.to_toml() and "# name" not in named.to_toml()
    with pytest.raises(Exception, match="f.toml"):  # an error still names the file
        dataclasses.replace(config, epochs=0).validate()


# --- calibration on every path ----------------------------------------------------------------


def _calibrated(run_dir: Path) -> bool:
    inspect = Path(run_dir) / "inspect"
    return (inspect / "calibration.json").is_file() and (inspect / "temperature.json").is_file()


def test_seeds_in_this_process_are_each_calibrated(cli, tmp_path, monkeypatch):
    monkeypatch.setenv("KCNN_SEED_WORKERS", "1")
    done = cli("train", "lenet5", *TINY, "--seeds", "3", "--calibrate", "--out", tmp_path, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    run_dirs = [Path(m["run_dir"]) for m in answer["runs"]]
    assert len(run_dirs) == 3 and all(_calibrated(d) for d in run_dirs)
    assert [c["temperature"] for c in answer["calibration"]] == [
        json.loads((d / "inspect" / "temperature.json").read_text())["temperature"]
        for d in run_dirs
    ]


@pytest.mark.slow
def test_seeds_in_child_processes_are_each_calibrated(tmp_path):
    done = kcnn(
        "train", "lenet5", *TINY, "--seeds", "2", "--calibrate", "--out", tmp_path, "--json",
        env={"KCNN_SEED_WORKERS": "2"}, timeout=600,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    answer = json.loads(done.stdout)
    run_dirs = [Path(m["run_dir"]) for m in answer["runs"]]
    assert len(run_dirs) == 2 and all(_calibrated(d) for d in run_dirs)
    assert len(answer["calibration"]) == 2 and all(
        "temperature" in c for c in answer["calibration"]
    )


def test_a_sweep_trial_is_calibrated(cli, tmp_path):
    pytest.importorskip("optuna")
    path = tmp_path / "s.toml"
    path.write_text(
        '[sweep]\ntrials = 1\nsampler = "grid"\n[sweep.space]\nbatch_size = [32]\n'
        f'[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 1\n'
        f'limit = 100\ncalibrate = true\nout = "{tmp_path / "runs"}"\n'
    )
    done = cli("sweep", path, "--json")
    assert done.code == 0, done.err
    (trial,) = json.loads(done.out)["trials"]
    assert _calibrated(tmp_path / "runs" / "sweep-s" / trial["run"])


# --- groups are what the user named -------------------------------------------------------------


@pytest.fixture(scope="module")
def two_groups(tmp_path_factory):
    """One 2-seed group of LeNet-5 on digits, and the same recipe again (a copy: the same
    settings and seeds give the same numbers, as a second machine would)."""
    from kcnn.commands import runner

    out = tmp_path_factory.mktemp("groups")
    config = TrainConfig(
        arch="lenet5", dataset="digits", epochs=1, limit=100, seeds=2, out=str(out)
    )
    first = runner.execute(config, quiet=True).group
    second = out / "20990101-000000-lenet5-digits-sequential-seeds"
    shutil.copytree(first, second)
    return first, second


def test_two_groups_of_the_same_recipe_compared_stay_two(two_groups, tmp_path, cli):
    first, second = two_groups
    done = cli("compare", first, second, "--out", tmp_path, "--json")
    assert done.code == 0, done.err
    described = json.loads(done.out)["groups"]
    assert len(described["groups"]) == 2
    assert [g["n"] for g in described["groups"].values()] == [2, 2]
    assert [g["seeds"] for g in described["groups"].values()] == [[83, 84], [83, 84]]
    (test,) = [t for t in described["tests"] if t["metric"] == "test_accuracy"]
    assert test["sentence"].startswith("no evidence of a difference") and test["n_a"] == 2
    assert not described["duplicates"]
    text = cli("compare", first, second, "--out", tmp_path / "text")
    said = [line for line in text.out.splitlines() if line.startswith("- no evidence")]
    assert text.code == 0 and [("test_accuracy" in line) for line in said] == [True, False]


def test_a_seed_that_appears_twice_in_a_group_counts_once_and_is_said(two_groups, tmp_path, cli):
    first, second = two_groups
    seed83 = [next(g.glob("*-seed83")) for g in (first, second)]
    seed84 = next(first.glob("*-seed84"))
    done = cli("compare", *seed83, seed84, "--out", tmp_path, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert len(answer["rows"]) == 3  # every run is listed ...
    (group,) = answer["groups"]["groups"].values()  # ... but the group counts seed 83 once
    assert group["n"] == 2 and sorted(group["seeds"]) == [83, 84]
    (note,) = answer["groups"]["duplicates"]
    assert "seed 83 appears 2 times" in note and "counted once" in note
    text = cli("compare", *seed83, seed84, "--out", tmp_path / "text")
    assert "note: seed 83 appears 2 times" in text.out
    md = next((tmp_path / "text").glob("*/comparison.md")).read_text()
    assert "counted once" in md


# --- how much a file asks for -------------------------------------------------------------------


def test_check_says_how_many_trainings_a_file_stands_for(tmp_path):
    path = tmp_path / "three.toml"
    run = '[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\nepochs = 2\n'
    path.write_text(run * 3)
    done = kcnn("run", path, "--set", "seeds=83", "--check", timeout=120)
    assert done.returncode == 0, done.stderr
    assert "249 trainings, 498 epochs in all" in done.stdout
    assert "--set seeds=83 is a count" in done.stdout and "--set seed=83" in done.stdout
    assert "83 trainings, 166 epochs in all" in done.stdout  # each run's own share
    plan = kcnn("run", path, "--set", "seeds=83", "--check", "--json", timeout=120)
    workload = json.loads(plan.stdout)["workload"]
    assert workload["trainings"] == 249 and workload["epochs_in_all"] == 498
    assert [w["trainings"] for w in workload["runs"]] == [83, 83, 83]
