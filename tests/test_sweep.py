"""`kcnn sweep`: the file's checks, a real Optuna study of real runs, pruning, resuming after a
signal, several processes on one study, the report and the confirmation over seeds."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

SPACE = """description = "<i>tiny</i> & co"
[sweep]
trials = {trials}
pruner = "{pruner}"
[sweep.space]
lr = {{ low = 1e-3, high = 1e-2, log = true }}
batch_size = [16, 32]
"""
RUN = """
[[run]]
command = "train"
arch = "lenet5"
dataset = "digits"
epochs = {epochs}
limit = 100
out = "{out}"
"""


def sweep_file(tmp_path: Path, trials=3, pruner="median", epochs=2, space=None) -> Path:
    path = tmp_path / "tiny.toml"
    head = space if space is not None else SPACE.format(trials=trials, pruner=pruner)
    path.write_text(head + RUN.format(epochs=epochs, out=tmp_path / "runs"))
    return path


def study_of(folder: Path):
    return optuna.load_study(study_name=folder.name, storage=f"sqlite:///{folder / 'study.db'}")


BAD_SPACES = {
    "empty choice": ("batch_size = []", "empty choice"),
    "low above high": ("lr = { low = 0.1, high = 0.01 }", "low (0.1) is above high (0.01)"),
    "log through zero": ("lr = { low = 0, high = 0.1, log = true }", "above zero"),
    "unknown setting": ("learning_rate = [0.1]", "unknown setting 'learning_rate'"),
}


@pytest.mark.parametrize("case", sorted(BAD_SPACES))
def test_a_bad_space_is_one_line_and_exit_2_before_anything_starts(tmp_path, kcnn_exe, case):
    line, expected = BAD_SPACES[case]
    path = sweep_file(tmp_path, space=f"[sweep]\ntrials = 2\n[sweep.space]\n{line}\n")
    done = subprocess.run(
        [*kcnn_exe, "sweep", str(path), "--check"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and expected in lines[0], lines
    assert not (tmp_path / "runs").exists()  # nothing made


def test_a_value_the_space_allows_but_the_run_refuses_is_caught_by_check(tmp_path, cli):
    path = sweep_file(tmp_path, space="[sweep]\n[sweep.space]\nwarmup = { low = 0, high = 5 }\n")
    result = cli("sweep", path, "--check")
    assert result.code == 2 and "warmup = 5 fails in the run" in result.err


def test_sweep_runs_trials_as_run_folders_reports_resumes_and_confirms(tmp_path, cli):
    path = sweep_file(tmp_path, trials=3)
    result = cli("sweep", path, "--json")
    assert result.code == 0, result.err
    record = json.loads(result.out)
    folder = tmp_path / "runs" / "sweep-tiny"
    trials = record["trials"]
    assert [t["trial"] for t in trials] == [0, 1, 2]
    assert all(t["state"] in ("complete", "pruned") for t in trials)
    # each trial is a normal run folder whose last validation accuracy is the trial's score
    for t in trials:
        run = folder / t["run"]
        metrics = json.loads((run / "metrics.json").read_text())
        assert metrics["status"] == "completed"
        history = (run / "history.csv").read_text().splitlines()
        last = dict(zip(history[0].split(","), history[-1].split(","), strict=True))
        assert float(last["val_accuracy"]) == pytest.approx(t["score"])
    # the report: every file, and one self-contained page
    for name in ("trials.json", "trials.csv", "best_config.json", "history.png", "report.html"):
        assert (folder / name).is_file(), name
    page = (folder / "report.html").read_text()
    assert "data:image/png;base64," in page and "<script" not in page and "http" not in page
    assert "&lt;i&gt;tiny&lt;/i&gt; &amp; co" in page and "<i>tiny" not in page
    assert record["best"]["trial"] in {0, 1, 2}
    # the same command again repeats nothing
    before = sorted(p.name for p in folder.glob("*-trial-*"))
    again = cli("sweep", path)
    assert again.code == 0, again.err
    assert "3 of 3 trials done" in again.out
    assert sorted(p.name for p in folder.glob("*-trial-*")) == before
    assert len(study_of(folder).trials) == 3
    # `kcnn runs` lists the sweep with its trials under it
    listing = json.loads(cli("runs", tmp_path / "runs", "--json").out)
    names = [r["name"] for r in listing]
    assert "sweep-tiny" in names and sum(n.startswith("sweep-tiny/") for n in names) == 3
    assert listing[names.index("sweep-tiny")]["status"] == "sweep"
    # `kcnn compare SWEEP` compares its best trials
    compared = cli("compare", folder, "--out", tmp_path / "compared", "--json")
    assert compared.code == 0, compared.err
    assert len(json.loads(compared.out)["rows"]) == sum(t["state"] == "complete" for t in trials)
    # the best trial's config.json replays with `kcnn run`
    replay = cli("run", folder / "best_config.json", "--json")
    assert replay.code == 0, replay.err
    replayed = json.loads(replay.out)["runs"][0]
    best_run = json.loads((folder / record["best"]["run"] / "metrics.json").read_text())
    assert replayed["test_accuracy"] == pytest.approx(best_run["test_accuracy"])
    # --confirm: the best trial over two seeds, compared
    confirmed = cli("sweep", path, "--confirm", "1", "--seeds", "2", "--json")
    assert confirmed.code == 0, confirmed.err
    confirm = json.loads(confirmed.out)["confirm"]
    assert confirm["rows"][0]["trial"] == record["best"]["trial"]
    assert len(confirm["rows"][0]["runs"]) == 2
    # every path the sweep records is inside the sweep folder, written from it
    recorded = [confirm["comparison"], *confirm["rows"][0]["runs"], *(t["run"] for t in trials)]
    recorded += confirm["tuning"]["start_runs"]
    assert all(not Path(p).is_absolute() and ".." not in Path(p).parts for p in recorded)
    assert (folder / confirm["comparison"] / "comparison.md").is_file()
    assert all((folder / p / "metrics.json").is_file() for p in confirm["rows"][0]["runs"])
    # did tuning help: the best trial against the file's starting settings over the same seeds
    tuning = confirm["tuning"]
    best_seeds = [
        json.loads((folder / r / "config.json").read_text())["seed"]
        for r in confirm["rows"][0]["runs"]
    ]
    assert tuning["seeds"] == best_seeds and len(tuning["start_runs"]) == 2
    for run, seed in zip(tuning["start_runs"], best_seeds, strict=True):
        settings = json.loads((folder / run / "config.json").read_text())
        assert settings["seed"] == seed and settings["limit"] == 100  # the [[run]] table's own
        assert settings["batch_size"] not in (16, 32)  # no searched value put in
    assert tuning["test"]["test"] == "paired t" and tuning["test"]["a"] == "the starting settings"
    assert tuning["sentence"] == tuning["test"]["sentence"] and "2 seeds" in tuning["sentence"]


def test_a_pruned_trial_ends_its_run_cleanly_and_is_recorded_pruned(tmp_path):
    from kcnn.commands import sweep as sweeping

    class Always(optuna.pruners.BasePruner):
        def prune(self, study, trial):
            return True

    plan = sweeping.load(sweep_file(tmp_path, epochs=4))
    plan.folder.mkdir(parents=True)
    study = optuna.create_study(direction="maximize", pruner=Always())
    study.optimize(lambda t: sweeping.objective(plan, t, print), n_trials=1)
    trial = study.trials[0]
    assert trial.state == optuna.trial.TrialState.PRUNED
    assert trial.user_attrs["pruned_at_epoch"] == 1
    run = plan.folder / trial.user_attrs["run_dirs"][0]
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["epochs_completed"] == 1
    assert metrics["pruned_at_epoch"] == 1 and "test_accuracy" in metrics


def test_a_trial_stopped_by_a_signal_is_run_again_by_the_same_command(
    tmp_path, cli, signal_after_epochs
):
    path = sweep_file(tmp_path, trials=2, pruner="none", epochs=3)
    folder = tmp_path / "runs" / "sweep-tiny"
    folder.mkdir(parents=True)
    watcher = signal_after_epochs(folder, 1, signal.SIGINT)
    stopped = cli("sweep", path)
    watcher.join()
    assert stopped.code == 130, stopped.err
    assert "is queued again: run the same `kcnn sweep" in stopped.err
    study = study_of(folder)
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "WAITING"]
    queued = study.trials[1].system_attrs["fixed_params"]
    assert queued == study.trials[0].params  # queued again with its own settings
    again = cli("sweep", path)
    assert again.code == 0, again.err
    study = study_of(folder)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert len(complete) == 2 and complete[0].params == study.trials[0].params
    statuses = sorted(
        json.loads((d / "metrics.json").read_text())["status"] for d in folder.glob("*-trial-*")
    )
    assert statuses == ["completed", "completed", "interrupted"]


@pytest.mark.slow
def test_two_processes_on_one_sqlite_study_lose_no_trial_and_run_none_twice(tmp_path, kcnn_exe):
    path = sweep_file(tmp_path, trials=4, pruner="none")
    done = subprocess.run(
        [*kcnn_exe, "sweep", str(path), "--jobs", "2"], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    folder = tmp_path / "runs" / "sweep-tiny"
    trials = study_of(folder).trials
    assert all(t.state.name == "COMPLETE" for t in trials)
    assert 4 <= len(trials) <= 5  # two workers may each start a last trial at the same moment
    folders = sorted(folder.glob("*-trial-*"))
    numbers = [int(p.name.rsplit("-", 1)[1]) for p in folders]
    assert sorted(numbers) == [t.number for t in trials]  # one run per trial, none twice
    ran = {Path(t.user_attrs["run_dirs"][0]).name for t in trials}
    assert ran == {p.name for p in folders}
    workers = {json.loads((p / "metrics.json").read_text())["status"] for p in folders}
    assert workers == {"completed"}


def test_a_missing_optuna_is_one_line_naming_the_extra(tmp_path, kcnn_exe):
    fake = tmp_path / "fake"
    (fake / "optuna").mkdir(parents=True)
    (fake / "optuna" / "__init__.py").write_text("raise ImportError('no optuna here')\n")
    import os

    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(fake), str(root)])}
    done = subprocess.run(
        [*kcnn_exe, "sweep", str(sweep_file(tmp_path))],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: kcnn sweep needs Optuna, an optional extra: pip install 'kcnn[sweep]'"
    )


def test_kcnn_run_points_a_sweep_file_to_kcnn_sweep(tmp_path, cli):
    result = cli("run", sweep_file(tmp_path), "--check")
    assert result.code == 2 and "use `kcnn sweep" in result.err


def test_the_library_sweep_file_checks(cli, tmp_path):
    path = Path(__file__).parent.parent / "experiments" / "sweeps" / "sweep-lenet5.toml"
    result = cli("sweep", path, "--check", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    plan = json.loads(result.out)
    assert plan["trials"] == 12 and set(plan["space"]) == {
        "lr",
        "batch_size",
        "weight_decay",
        "augment",
        "label_smoothing",
    }


def test_a_study_database_that_cannot_be_opened_is_one_line_and_leaves_nothing(tmp_path, cli):
    result = cli("sweep", sweep_file(tmp_path), "--storage", "nosuchdb://x/y")
    assert result.code == 2
    assert result.err.startswith("error: cannot open the study in nosuchdb://x/y")
    assert not (tmp_path / "runs" / "sweep-tiny").exists()


def test_help_imports_neither_optuna_nor_mlflow(kcnn_exe):
    import sys

    code = (
        "import sys\nfrom kcnn.cli import main\ntry:\n    main(['sweep', '--help'])\n"
        "except SystemExit:\n    pass\n"
        "assert not {'optuna', 'mlflow', 'tensorflow'} & set(sys.modules), sorted(sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-500:]
    assert "--confirm" in done.stdout and "--mlflow" in done.stdout


def test_the_library_sweep_results_are_made_from_its_records():
    from kcnn.runs.sweep_report import confirm_table, markdown, summary

    library = Path(__file__).parent.parent / "experiments"
    results = (library / "RESULTS.md").read_text()
    for name in ("sweep-lenet5", "recipe-lenet5-seeds"):
        record = json.loads((library / "sweeps" / f"{name}.trials.json").read_text())
        assert summary(record) in results and markdown(record) in results
        assert confirm_table(record) in results


def test_space_kinds_samplers_and_the_grid_size(tmp_path):
    from kcnn.commands import sweep as sweeping
    from kcnn.errors import KcnnError

    space = """[sweep]
sampler = "grid"
[sweep.space]
batch_size = [16, 32]
warmup = { low = 0, high = 1 }
label_smoothing = { low = 0.0, high = 0.2, step = 0.1 }
"""
    plan = sweeping.load(sweep_file(tmp_path, space=space))
    assert plan.trials == 2 * 2 * 3  # the whole grid by default
    assert plan.space["label_smoothing"].grid() == [0.0, 0.1, 0.2]
    study = optuna.create_study(sampler=sweeping._sampler(optuna, plan, 0))
    trial = study.ask()
    drawn = {k: d.suggest(trial, k) for k, d in plan.space.items()}
    assert isinstance(drawn["warmup"], int) and drawn["batch_size"] in (16, 32)
    assert drawn["label_smoothing"] in (0.0, 0.1, 0.2)
    for bad, expected in (
        ('sampler = "grid"\n[sweep.space]\nlr = { low = 0.001, high = 0.01 }', "needs choices"),
        ("[sweep.space]\nlr = { low = 0.001, high = 0.01, log = true, step = 0.001 }", "no step"),
        ("[sweep.space]\nepochs = { low = 1.5, high = 3 }", "whole number"),
        ("[sweep.space]\noptimizer = { low = 1, high = 3 }", "not a number setting"),
        ("[sweep.space]\noptimizer = ['adam', 'adamx']", "unknown optimizer 'adamx'"),
        ('pruner = "hyperband"\n[sweep.space]\nlr = [0.01]', "choose one of: median"),
        ("[sweep.space]\nname = ['a']", "names and places its trials itself"),
    ):
        with pytest.raises(KcnnError, match=expected):
            sweeping.load(sweep_file(tmp_path, space=f"[sweep]\n{bad}\n"))


@pytest.mark.slow
def test_a_trial_whose_process_was_killed_is_run_again_after_its_heartbeat_stops(
    tmp_path, kcnn_exe
):
    import time

    path = sweep_file(tmp_path, trials=2, pruner="none", epochs=3)
    folder = tmp_path / "runs" / "sweep-tiny"
    process = subprocess.Popen([*kcnn_exe, "sweep", str(path)], stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not any(
        len(h.read_text().splitlines()) >= 2 for h in folder.glob("*/history.csv")
    ):
        time.sleep(0.2)
    process.kill()  # SIGKILL: no handler runs, the trial stays RUNNING in the study
    process.wait(timeout=60)
    assert [t.state.name for t in study_of(folder).trials] == ["RUNNING"]
    done = subprocess.run(
        [*kcnn_exe, "sweep", str(path)], capture_output=True, text=True, timeout=900
    )
    assert done.returncode == 0, done.stderr[-2000:]
    trials = study_of(folder).trials
    states = [t.state.name for t in trials]
    assert states.count("COMPLETE") == 2 and states[0] == "FAIL"  # failed by its stale heartbeat
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state.name == "COMPLETE" and retry.params == trials[0].params
