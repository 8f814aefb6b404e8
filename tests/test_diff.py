"""`kcnn diff` and the single-run verdict as a user meets them: the installed `kcnn` in a
subprocess, on real runs. A run and its `kcnn run RUN/config.json` replay are built to be
identical and are; two runs that differ in one setting name it first and are judged image by
image; runs on other test images fall back to the unpaired test and say why; bad folders are
one line and exit 2."""

from __future__ import annotations

import html
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from kcnn.text import markdown_cell

TIMEOUT = 300
SMALL = ("--dataset", "digits", "--epochs", "1", "--limit", "300")


def kcnn(*args, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
    )


def trained(result: subprocess.CompletedProcess) -> Path:
    assert result.returncode == 0, result.stderr[-2000:]
    run = json.loads(result.stdout)["runs"][0]  # kcnn train's metrics, or kcnn run's summary
    return Path(run["run_dir"] if "run_dir" in run else run["run_dirs"][0])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A run, its replay from its own config.json, and one with another learning rate."""
    here = tmp_path_factory.mktemp("diff")
    first = trained(kcnn("train", "lenet5", *SMALL, "--out", "runs", "--json", cwd=here))
    replay = trained(kcnn("run", first / "config.json", "--json", cwd=here))
    other_lr = trained(
        kcnn("train", "lenet5", *SMALL, "--lr", "0.01", "--out", "runs", "--json", cwd=here)
    )
    return here, first, replay, other_lr


def test_training_keeps_each_test_image_and_shows_the_interval(runs):
    here, first, *_ = runs
    from kcnn.runs.run import RunFolder

    results = RunFolder(here / first).test_predictions()
    metrics = json.loads((here / first / "metrics.json").read_text())
    assert (
        results.n == json.loads((here / first / "config.json").read_text())["split_sizes"]["test"]
    )
    assert np.mean(results.correct) == pytest.approx(metrics["test_accuracy"], abs=1e-12)
    assert results.held_out and results.probabilities.shape == (results.n, 10)
    shown = kcnn("show", first, cwd=here)
    assert shown.returncode == 0, shown.stderr
    assert "95% CI" in shown.stdout and f"of {results.n} test images (Wilson)" in shown.stdout
    listed = kcnn("runs", "runs", cwd=here).stdout
    assert f"{metrics['test_accuracy']:.4f} [" in listed


def test_a_run_and_its_replay_are_built_identical_and_are(runs):
    here, first, replay, *_ = runs
    done = kcnn("diff", first, replay, cwd=here)
    assert done.returncode == 0, done.stderr
    assert "nothing differs in their records" in done.stdout
    assert "identical: built to be identical and are" in done.stdout
    answer = json.loads(kcnn("diff", first, replay, "--json", cwd=here).stdout)
    assert answer["differences"] == []
    assert answer["identical"]["built"] is True and answer["identical"]["are"] is True
    verdict = answer["noise"]["verdict"]
    assert verdict["paired"] and verdict["only_a"] == verdict["only_b"] == 0 and verdict["p"] == 1


def test_one_setting_apart_names_it_first_and_is_judged_image_by_image(runs):
    here, first, _, other_lr = runs
    answer = json.loads(kcnn("diff", first, other_lr, "--json", cwd=here).stdout)
    assert answer["differences"][0]["key"] == "lr"
    assert (answer["differences"][0]["a"], answer["differences"][0]["b"]) == (0.001, 0.01)
    assert all(d["category"] != "settings" for d in answer["differences"][1:])
    assert answer["identical"]["built"] is False
    assert answer["identical"]["sentence"] == "not built to be identical: lr differs"
    verdict = answer["noise"]["verdict"]
    assert verdict["paired"] and verdict["test"] == "McNemar exact"
    text = kcnn("diff", first, other_lr, cwd=here).stdout
    lines = text.splitlines()
    table = lines[lines.index("what differs, most able to move the numbers first:") + 2]
    assert table.split()[:2] == ["setting", "lr"]
    assert "McNemar's exact test" in text and f"on the same {verdict['n_a']} test images" in text


def test_compare_gives_the_paired_verdict_everywhere(runs, tmp_path):
    here, first, _, other_lr = runs
    done = kcnn("compare", first, other_lr, "--out", tmp_path, cwd=here)
    assert done.returncode == 0, done.stderr
    (sentence,) = [line for line in done.stdout.splitlines() if "McNemar's exact test" in line]
    (folder,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    record = json.loads((folder / "comparison.json").read_text())
    (verdict,) = record["verdicts"]
    assert sentence == f"- {verdict['sentence']}" and verdict["paired"]
    # in comparison.md as every name there is: markdown's own characters escaped ("p \\< 0.001")
    assert markdown_cell(verdict["sentence"]) in (folder / "comparison.md").read_text()
    page = (folder / "report.html").read_text()
    assert f"<li>{html.escape(verdict['sentence'])}</li>" in page  # one item a sentence
    assert "10,000 paired bootstrap resamples" in verdict["sentence"]
    assert all(row["test_accuracy_95ci"] for row in record["rows"])  # each run's Wilson interval


@pytest.mark.slow
def test_other_test_images_fall_back_to_the_unpaired_test_and_say_why(runs):
    here, first, *_ = runs  # digits has no test split: another seed holds out other images
    other_seed = trained(
        kcnn("train", "lenet5", *SMALL, "--seed", "84", "--out", "runs", "--json", cwd=here)
    )
    answer = json.loads(kcnn("diff", first, other_seed, "--json", cwd=here).stdout)
    assert answer["differences"][0]["key"] == "seed"
    verdict = answer["noise"]["verdict"]
    assert not verdict["paired"] and verdict["test"] == "two-proportion z"
    assert "the held-out test set follows the seed: 83 and 84" in verdict["why_unpaired"]


def test_an_older_run_without_per_image_results_is_judged_unpaired(runs, tmp_path):
    import shutil

    here, first, _, other_lr = runs
    old = tmp_path / "old"
    shutil.copytree(here / first, old)
    (old / "test_predictions.npz").unlink()
    answer = json.loads(kcnn("diff", old, other_lr, "--json", cwd=here).stdout)
    verdict = answer["noise"]["verdict"]
    assert not verdict["paired"]
    assert (
        verdict["why_unpaired"]
        == "A keeps no per-image test results (trained before kcnn kept them)"
    )


def refused(result: subprocess.CompletedProcess, *words: str) -> None:
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert all(w in lines[0] for w in words), lines[0]


def test_bad_folders_are_one_line(runs, tmp_path):
    here, first, *_ = runs
    refused(kcnn("diff", first, tmp_path / "nowhere", cwd=here), "no run folder")
    refused(kcnn("diff", first, "--json", cwd=here), "Missing argument")
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    (damaged / "config.json").write_text("{not json")
    refused(kcnn("diff", first, damaged, cwd=here), "damaged")
