"""`--seeds`: a group of seed runs, its statistics checked against the runs' own records, resumed
where it stopped, compared with `kcnn compare`, listed by `kcnn runs` and `kcnn show`."""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import t as student

from kcnn.engine.config import CompareConfig, TrainConfig
from kcnn.errors import KcnnError

TINY = {"dataset": "digits", "epochs": 1, "limit": 100}


@pytest.fixture(scope="module")
def train_group(tmp_path_factory):
    from kcnn.commands.seeds import run_group

    out = tmp_path_factory.mktemp("train-group")
    return run_group(TrainConfig(arch="lenet5", seeds=2, out=str(out), **TINY), quiet=True)


@pytest.fixture(scope="module")
def apis_group(tmp_path_factory):
    from kcnn.commands.seeds import run_group

    out = tmp_path_factory.mktemp("apis-group")
    config = CompareConfig(arch="lenet5", seeds="83,84", out=str(out), same_init=True, **TINY)
    return run_group(config, quiet=True)


def test_seeds_is_a_count_or_a_list():
    assert TrainConfig(arch="lenet5", seeds=3, seed=7, **TINY).validate().seed_list() == [7, 8, 9]
    assert TrainConfig(arch="lenet5", seeds="5,1", **TINY).validate().seed_list() == [5, 1]
    assert TrainConfig(arch="lenet5", seeds=[83, 90], **TINY).validate().seed_list() == [83, 90]
    for bad in (1, "x", "83,83", True, [1, "2"], 0):
        with pytest.raises(KcnnError, match="--seeds"):
            TrainConfig(arch="lenet5", seeds=bad, **TINY).validate()


def test_bad_seeds_on_the_command_line(kcnn_exe, tmp_path):
    done = subprocess.run(
        [*kcnn_exe, "train", "lenet5", "--dataset", "digits", "--seeds", "83,x"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 2
    assert done.stderr.startswith("error: --seeds") and done.stderr.count("\n") == 1
    assert not (tmp_path / "runs").exists()


def test_group_statistics_are_those_of_the_seed_records(train_group):
    folder, record = train_group.folder, train_group.record
    assert record["status"] == "completed" and record["seeds"] == [83, 84]
    ((name, group),) = record["groups"].items()
    assert name == "lenet5-digits-sequential" and group["seeds"] == [83, 84]
    runs = [folder / p for p in group["runs"]]
    assert all(r.parent == folder for r in runs)
    seeds = [json.loads((r / "config.json").read_text())["seed"] for r in runs]
    assert seeds == [83, 84]
    for metric in ("test_accuracy", "test_loss"):
        x = np.array([json.loads((r / "metrics.json").read_text())[metric] for r in runs])
        mean, sd = x.sum() / x.size, math.sqrt(((x - x.mean()) ** 2).sum() / (x.size - 1))
        half = student.ppf(0.975, x.size - 1) * sd / math.sqrt(x.size)
        s = group["metrics"][metric]
        assert s["mean"] == pytest.approx(mean, abs=1e-12)
        assert s["sd"] == pytest.approx(sd, abs=1e-12)
        assert (s["ci_low"], s["ci_high"]) == pytest.approx((mean - half, mean + half), abs=1e-12)
    for picture in ("curves_band.png", "per_class.png", "group.md", "report.html"):
        assert (folder / picture).is_file(), picture
    page = (folder / "report.html").read_text()
    assert "<details><summary><b>lenet5-digits-sequential</b>" in page
    links = re.findall(r'href="([^"]+)"', page)  # each seed's own report, inside the group
    assert len(links) == 2 and all((folder / link).is_file() for link in links)
    assert "f1" in json.dumps(group["per_class"])


def test_runs_and_show_list_a_group_as_one_line(train_group, cli):
    out = train_group.folder.parent
    listed = cli("runs", out, "--json")
    assert listed.code == 0
    rows = json.loads(listed.out)
    assert rows[0]["kind"] == "group" and rows[0]["seeds"] == [83, 84]
    mean = train_group.record["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]
    assert rows[0]["test_accuracy"] == mean["mean"]
    assert [r["kind"] for r in rows[1:]] == ["run", "run"]
    text = cli("runs", out).out.splitlines()
    assert f"{mean['mean']:.4f} ± {mean['half_width']:.4f}" in text[1]
    assert text[2].startswith("  ")  # its seeds, indented under it
    shown = cli("show", train_group.folder, "--json")
    assert json.loads(shown.out)["groups"] == train_group.record["groups"]


def test_an_interrupted_group_runs_only_its_missing_seeds(train_group, tmp_path, cli):
    from kcnn.commands.seeds import run_group

    copy = tmp_path / train_group.folder.name
    shutil.copytree(train_group.folder, copy)
    record = json.loads((copy / "group.json").read_text())
    record["status"] = "interrupted"
    (copy / "group.json").write_text(json.dumps(record))
    kept, lost = sorted(p for p in copy.iterdir() if p.is_dir())
    shutil.rmtree(lost)
    again = run_group(TrainConfig(arch="lenet5", seeds=2, out=str(tmp_path), **TINY), quiet=True)
    assert again.folder == copy and again.record["status"] == "completed"
    folders = sorted(p for p in copy.iterdir() if p.is_dir())
    assert kept in folders and len(folders) == 2
    before = train_group.record["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]
    after = again.record["groups"]["lenet5-digits-sequential"]["metrics"]["test_accuracy"]
    assert after["values"] == before["values"]  # the re-run seed gives its same numbers
    # `kcnn run GROUP` does the same for a group interrupted again
    record = json.loads((copy / "group.json").read_text())
    (copy / "group.json").write_text(json.dumps({**record, "status": "interrupted"}))
    shutil.rmtree(folders[0])
    done = cli("run", copy, "--json")
    assert done.code == 0, done.err
    assert json.loads((copy / "group.json").read_text())["status"] == "completed"


def test_same_init_forms_are_identical_over_seeds(apis_group):
    record = apis_group.record
    assert list(record["groups"]) == [
        "lenet5-digits-sequential",
        "lenet5-digits-functional",
        "lenet5-digits-subclassed",
    ]
    assert record["identical"] is True
    accuracy = [t for t in record["tests"] if t["metric"] == "test_accuracy"]
    assert len(accuracy) == 3
    for t in accuracy:  # an identical pair of groups: no evidence of a difference
        assert t["test"] == "paired t" and t["difference"] == 0 and t["p"] == 1.0
        assert t["sentence"].startswith("no evidence of a difference")
    seeds = [p for p in apis_group.folder.iterdir() if p.is_dir()]
    assert len(seeds) == 2 and all((p / "comparison.json").is_file() for p in seeds)


def test_compare_forms_groups_from_runs_that_differ_only_in_seed(apis_group, cli, tmp_path):
    done = cli("compare", apis_group.folder, "--out", tmp_path, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert len(answer["rows"]) == 6
    groups = answer["groups"]["groups"]
    assert {g["n"] for g in groups.values()} == {2}
    assert len(groups) == 3
    tests = [t for t in answer["groups"]["tests"] if t["metric"] == "test_accuracy"]
    assert all(t["p_holm"] is not None for t in tests)  # three pairs: Holm-corrected
    assert all(not t["significant"] for t in tests)
    md = next(tmp_path.glob("*/comparison.md")).read_text()
    assert "## Seed groups" in md and "no evidence of a difference" in md
    text = cli("compare", apis_group.folder, "--out", tmp_path / "text")
    # every tested metric's sentence on the terminal, each naming its Holm family
    assert text.code == 0 and text.out.count("- no evidence of a difference") == 6
    for metric in ("test_accuracy", "test_loss"):
        family = f"Holm-corrected over the 3 pairs of groups compared in {metric})"
        assert text.out.count(family) == 3, text.out


def test_experiment_file_takes_seeds(tmp_path, cli):
    path = tmp_path / "e.toml"
    path.write_text('[[run]]\ncommand = "train"\narch = "lenet5"\ndataset = "digits"\nseeds = 3\n')
    done = cli("run", path, "--dry-run", "--json")
    assert done.code == 0, done.err
    assert json.loads(done.out)["runs"][0]["seeds"] == 3


@pytest.mark.slow
def test_seeds_run_in_parallel_processes(kcnn_exe, tmp_path):
    env = {**os.environ, "KCNN_SEED_WORKERS": "2"}
    command = [*kcnn_exe, "train", "lenet5", "--dataset", "digits", "--epochs", "1"]
    command += ["--limit", "100", "--seeds", "2", "--out", str(tmp_path), "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["status"] == "completed" and len(answer["runs"]) == 2
    group = Path(answer["group"])
    assert sorted(json.loads((group / "group.json").read_text())["seeds"]) == [83, 84]


def test_independent_init_over_seeds_is_answered_by_a_paired_test(tmp_path, cli):
    """Seed 003's question — do the API forms differ? — with each form initialised on its own."""
    done = cli(
        "compare-apis", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "100",
        "--apis", "sequential,functional", "--independent-init", "--seeds", "2",
        "--out", tmp_path, "--json",
    )  # fmt: skip
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert list(answer["groups"]) == ["lenet5-digits-sequential", "lenet5-digits-functional"]
    (test,) = [t for t in answer["tests"] if t["metric"] == "test_accuracy"]
    assert test["test"] == "paired t" and test["n_a"] == test["n_b"] == 2
    assert test["sentence"] and test["effect"] == "d_z"
    inits = {(r["seed"], r["init_seed"]) for r in map(_config, answer["runs"])}
    # every form of every seed started from its own weights: no init seed is shared
    assert len(inits) == 4 and len({init for _, init in inits}) == 4


def _config(metrics: dict) -> dict:
    return json.loads((Path(metrics["run_dir"]) / "config.json").read_text())


def test_diff_of_a_group_and_its_copy_and_of_two_forms(train_group, apis_group, cli, tmp_path):
    """`kcnn diff` of groups: a copy is built identical and is, seed for seed; two groups of
    different commands list the command first and test each seed's accuracy against the other's."""
    import shutil

    copy = tmp_path / "copy-seeds"
    shutil.copytree(train_group.folder, copy)
    done = cli("diff", train_group.folder, copy, "--json")
    assert done.code == 0, done.err
    answer = json.loads(done.out)
    assert answer["differences"] == [] and answer["a"]["kind"] == "group"
    assert answer["identical"]["built"] and answer["identical"]["are"]
    (accuracy, loss) = answer["noise"]["tests"]
    assert accuracy["test"] == "paired t" and accuracy["p"] == 1.0 and loss["metric"] == "test_loss"
    other = json.loads(cli("diff", train_group.folder, apis_group.folder, "--json").out)
    assert other["differences"][0]["key"] == "command"
    assert other["identical"]["built"] is False
    # three forms per seed against one run per seed: nothing pairs, Welch over all of them
    assert all(
        (t["n_a"], t["n_b"], t["test"]) == (2, 6, "Welch t") for t in other["noise"]["tests"]
    )
