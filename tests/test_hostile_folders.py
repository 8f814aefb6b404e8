"""Run folders from someone else: every after-training command reads them as untrusted.

Each test builds a hostile folder from one real tiny run and drives the installed console script
in a subprocess under a timeout: the exit status, one `error:` line where the command refuses,
no traceback, no hang, nothing read from outside the folder into a report, nothing written or
deleted outside it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import kcnn, refused

TIMEOUT = 120  # seconds: a hang fails the test instead of the suite
SECRET = b"-----BEGIN PRIVATE KEY----- the user's own secret, never to be shared"


def clean(result: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    return result


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One real, finished LeNet-5 run (digits, one epoch)."""
    out = tmp_path_factory.mktemp("trained")
    clean(kcnn("train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60",
               "--batch-size", "16", "--out", out, "--name", "mine"))  # fmt: skip
    (run,) = out.iterdir()
    return run


@pytest.fixture
def place(tmp_path, trained):
    """A runs folder holding a copy of the trained run, and a secret file outside it."""
    runs = tmp_path / "runs"
    runs.mkdir()
    run = runs / trained.name
    shutil.copytree(trained, run, symlinks=True)
    secret = tmp_path / "id_rsa"
    secret.write_bytes(SECRET)
    return runs, run, secret


def _no_secret_in(path: Path) -> None:
    text = path.read_text()
    assert base64.b64encode(SECRET[:30]).decode()[:32] not in text
    assert SECRET.decode()[:20] not in text


def test_a_report_never_embeds_what_a_planted_link_points_to(place, tmp_path):
    runs, run, secret = place
    (run / "curves.png").unlink()
    (run / "curves.png").symlink_to(secret)
    (run / "visualize").mkdir()
    (run / "visualize" / "stolen.png").symlink_to(secret)
    other = runs / "other"
    shutil.copytree(run, other, symlinks=True)
    clean(kcnn("compare", run, other, "--out", tmp_path / "cmp"))
    (folder,) = (tmp_path / "cmp").iterdir()
    _no_secret_in(folder / "report.html")
    clean(kcnn("visualize", run))
    _no_secret_in(run / "report.html")
    assert "curves.png not shown" in (run / "report.html").read_text()
    assert secret.read_bytes() == SECRET


def test_a_picture_that_is_not_a_png_is_not_embedded(place):
    runs, run, secret = place
    (run / "confusion_matrix.png").write_bytes(SECRET)
    clean(kcnn("visualize", run))
    text = (run / "report.html").read_text()
    _no_secret_in(run / "report.html")
    assert "not a PNG" in text


@pytest.mark.parametrize(
    "plant",
    ["fifo", "dev-zero", "deep", "nan", "wrong-type", "huge-list", "not-an-object"],
)
def test_damaged_records_are_listed_as_damaged_and_refused_in_one_line(place, plant):
    runs, run, _ = place
    metrics = run / "metrics.json"
    metrics.unlink()
    if plant == "fifo":
        os.mkfifo(metrics)
    elif plant == "dev-zero":
        metrics.symlink_to("/dev/zero")
    elif plant == "deep":
        metrics.write_text("[" * 100_000 + "]" * 100_000)
    elif plant == "nan":
        metrics.write_text('{"status": "completed", "test_accuracy": NaN}')
    elif plant == "wrong-type":
        metrics.write_text('{"status": "completed", "test_accuracy": "high", "params": 7}')
    elif plant == "huge-list":
        metrics.write_text(json.dumps({"status": "completed", "confusion_matrix": [[-1]]}))
    else:
        metrics.write_text("[1, 2, 3]")
    rows = json.loads(clean(kcnn("runs", runs, "--json")).stdout)
    (row,) = rows
    assert row["status"] == "damaged" and "metrics.json" in row["damage"], row
    assert "damaged" in clean(kcnn("runs", runs)).stdout
    refused(kcnn("show", run), "metrics.json", alone=False)
    refused(kcnn("predict", run, run / "curves.png"), "metrics.json", alone=False)
    refused(kcnn("export", run), "metrics.json", alone=False)


def test_a_comparison_that_lists_itself_or_loops_does_not_recurse(place, tmp_path):
    runs, run, _ = place
    loop = runs / "20200101-000000-loop"
    loop.mkdir()
    (loop / "comparison.json").write_text(
        json.dumps({"config": {"command": "compare", "runs": [str(loop), str(runs), str(run)]}})
    )
    (loop / "inside").symlink_to(loop)  # a folder that contains itself
    (runs / "outside").symlink_to(tmp_path)
    rows = json.loads(clean(kcnn("runs", runs, "--json")).stdout)
    assert {r["status"] for r in rows} >= {"comparison", "completed", "damaged"}
    assert len(rows) < 10
    shown = clean(kcnn("show", loop))
    assert "Traceback" not in shown.stderr
    clean(kcnn("runs", runs, "--sort", "accuracy"))


def test_a_planted_visualize_link_is_refused_and_nothing_is_written_outside(place, tmp_path):
    runs, run, secret = place
    outside = tmp_path / "outside"
    outside.mkdir()
    (run / "visualize").symlink_to(outside)
    refused(kcnn("visualize", run), "visualize", "link", alone=False)
    assert list(outside.iterdir()) == []


def test_a_planted_picture_link_is_replaced_never_written_through(place):
    runs, run, secret = place
    (run / "visualize").mkdir()
    (run / "visualize" / "filters.png").symlink_to(secret)
    clean(kcnn("visualize", run))
    assert secret.read_bytes() == SECRET
    assert not (run / "visualize" / "filters.png").is_symlink()


def test_a_resume_never_reads_or_writes_through_a_planted_link(place, trained):
    runs, run, secret = place
    metrics = json.loads((run / "metrics.json").read_text())
    metrics["status"] = "interrupted"
    (run / "metrics.json").write_text(json.dumps(metrics))
    (run / "history.csv").unlink()
    (run / "history.csv").symlink_to(secret)
    (run / "checkpoint.json").write_text(json.dumps({"epoch": 1, "file": "checkpoint.keras"}))
    shutil.copy(run / "model.keras", run / "checkpoint.keras")
    refused(kcnn("train", "--resume", run), "history.csv", alone=False)
    assert secret.read_bytes() == SECRET


def test_a_settings_record_with_a_wrong_type_is_damaged(place):
    runs, run, _ = place
    config = json.loads((run / "config.json").read_text())
    config["epochs"] = "ten"
    (run / "config.json").write_text(json.dumps(config))
    (row,) = json.loads(clean(kcnn("runs", runs, "--json")).stdout)
    assert row["status"] == "damaged" and "epochs" in row["damage"]
    refused(kcnn("run", run), "epochs", alone=False)


# --- groups of seed runs: group.json from anyone -------------------------------------------------

GROUPS = {
    "groups a list": lambda g: g.update(groups=[1, 2]),
    "config a list": lambda g: g.update(config=["lenet5"]),
    "seeds text": lambda g: g.update(seeds="83"),
    "a summary a list": lambda g: g["groups"]["mine"].update(metrics=[1]),
    "a mean that is text": lambda g: g["groups"]["mine"]["metrics"]["test_accuracy"].update(
        mean="high"
    ),
    "a setting of the wrong type": lambda g: g["config"].update(epochs="many"),
    "tests a table": lambda g: g.update(tests={"a": 1}),
    "not an object": None,
}


def _group(runs: Path, run: Path) -> Path:
    """A group folder holding the trained run as its one seed, with a sound group.json."""
    group = runs / "20200101-000000-mine-seeds"
    group.mkdir()
    shutil.move(run, group / run.name)
    summary = {"n": 1, "mean": 0.5, "sd": None, "ci_low": None, "ci_high": None, "values": [0.5]}
    record = {
        "command": "train",
        "name": "mine",
        "kind": "group",
        "config": {"arch": "lenet5", "dataset": "digits", "epochs": 1, "seed": 83},
        "seeds": [83],
        "status": "completed",
        "groups": {
            "mine": {
                "n": 1,
                "seeds": [83],
                "runs": [str(group / run.name)],
                "metrics": {"test_accuracy": summary},
                "per_class": {},
            }  # fmt: skip
        },
        "tests": [],
    }
    (group / "group.json").write_text(json.dumps(record))
    (group / "group.md").write_text("# mine: 1 seed\n")
    return group


def test_a_sound_group_is_listed_and_shown(place):
    runs, run, _ = place
    group = _group(runs, run)
    rows = json.loads(clean(kcnn("runs", runs, "--json")).stdout)
    assert rows[0]["kind"] == "group" and rows[0]["status"] == "completed"
    assert "# mine: 1 seed" in clean(kcnn("show", group)).stdout


@pytest.mark.parametrize("case", sorted(GROUPS))
def test_a_hostile_group_json_is_listed_as_damaged_and_refused_by_show(place, case):
    runs, run, _ = place
    group = _group(runs, run)
    record = json.loads((group / "group.json").read_text())
    if GROUPS[case] is None:
        record = [record]
    else:
        GROUPS[case](record)
    (group / "group.json").write_text(json.dumps(record))
    rows = json.loads(clean(kcnn("runs", runs, "--json")).stdout)
    assert rows[0]["status"] == "damaged" and "group.json" in rows[0]["damage"], rows[0]
    assert "damaged" in clean(kcnn("runs", runs)).stdout
    for args in ([], ["--json"]):
        refused(kcnn("show", group, *args), "group.json")


def test_a_planted_group_md_link_is_never_read(place):
    runs, run, secret = place
    group = _group(runs, run)
    (group / "group.md").unlink()
    (group / "group.md").symlink_to(secret)
    shown = clean(kcnn("show", group)).stdout
    assert SECRET.decode()[:20] not in shown


# --- kcnn runs: folders of any size, names kcnn show finds ----------------------------------------


def test_runs_of_a_folder_of_more_than_ten_thousand_entries_lists_the_newest(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    for i in range(10_050):  # stamped as kcnn names runs: one second apart
        (runs / f"20250101-{i // 3600:02d}{i // 60 % 60:02d}{i % 60:02d}-r{i}").mkdir()
    result = clean(kcnn("runs", runs, "--json"))
    rows = json.loads(result.stdout)
    assert len(rows) == 10_000
    assert {r["name"].rsplit("-r", 1)[1] for r in rows} == {str(i) for i in range(50, 10_050)}
    assert "holds 10,050 entries; the newest 10,000 are listed" in result.stderr


def test_every_name_runs_shows_of_another_folder_is_one_show_finds(place, tmp_path):
    runs, run, _ = place
    shutil.copytree(run, runs / "other")
    _group(runs, run)
    kept = tmp_path / "kept"
    runs.rename(kept)  # not ./runs, where `kcnn show NAME` looks for a bare name
    table = clean(kcnn("runs", kept, cwd=tmp_path)).stdout.splitlines()[1:]
    names = [line.split()[0] for line in table]
    assert len(names) == 3 and sum("/" in n for n in names) == 3, names  # the seed run nested
    for name in names:
        clean(kcnn("show", name, cwd=tmp_path))


def test_resuming_a_run_stopped_before_its_first_checkpoint_says_it_trains_it_again(place):
    runs, run, _ = place
    metrics = json.loads((run / "metrics.json").read_text())
    (run / "metrics.json").write_text(json.dumps({**metrics, "status": "interrupted"}))
    (run / "history.csv").unlink()
    done = clean(kcnn("train", "--resume", run))
    notes = [line for line in done.stderr.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "stopped before its first checkpoint" in notes[0]
    assert json.loads((run / "metrics.json").read_text())["status"] == "completed"
    assert len((run / "history.csv").read_text().splitlines()) == 2  # its one epoch, from epoch 1
