"""Hostile input to `kcnn sweep`, `kcnn compare SWEEP` and `--mlflow`, tried as a user meets it:
the installed console script in a subprocess under a timeout. Each case ends in exit status 2 and
one `error:` line naming what was wrong: no traceback, no hang, nothing made or written outside
where the user asked, nothing that existed lost, no trial trained before a refusal.

The timeouts are the speed claims: a grid listed point by point, or a store retried for a minute,
would run past them.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

optuna = pytest.importorskip("optuna")

TIMEOUT = 120


def kcnn(*args, timeout: float = TIMEOUT, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "kcnn.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
        cwd=cwd,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "CUDA_VISIBLE_DEVICES": ""},
    )


def refused(result: subprocess.CompletedProcess, *words: str) -> str:
    """The one `error:` line of a refusal (exit 2, no traceback), holding each of `words`."""
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-2000:]
    for word in words:
        assert word in errors[0], (word, errors[0])
    return errors[0]


RUN = """
[[run]]
command = "train"
arch = "lenet5"
dataset = "digits"
epochs = 1
limit = 60
out = "{out}"
"""


def sweep_file(tmp_path: Path, sweep: str, name: str = "tiny.toml") -> Path:
    path = tmp_path / name
    path.write_text(sweep + RUN.format(out=tmp_path / "runs"))
    return path


PLAIN = '[sweep]\ntrials = 1\npruner = "none"\n[sweep.space]\nbatch_size = [16, 32]\n'


# --- files that passed --check and then crashed, or exhausted memory in --check ------------------

GRID = '[sweep]\nsampler = "grid"\n[sweep.space]\n'
SPACES = {
    # a grid over every whole number a setting allows: 4 billion points, counted, never listed
    "a grid of billions": (GRID + "seed = { low = 0, high = 4000000000 }\n", "100,000 points"),
    "a grid of a tiny step": (
        GRID + "lr = { low = 0.001, high = 0.01, step = 1e-9 }\n",
        "100,000 points",
    ),
    "a grid of the smallest step": (
        GRID + "lr = { low = 0.001, high = 0.01, step = 5e-324 }\n",
        "too fine for Optuna",
    ),
    "a grid of two dimensions": (
        GRID + "seed = { low = 0, high = 999 }\nbatch_size = { low = 1, high = 1000 }\n",
        "100,000 points",
    ),
    "an infinite step": (
        "[sweep]\n[sweep.space]\nlr = { low = 0.001, high = 0.01, step = inf }\n",
        "step must be a finite number",
    ),
    "a step of NaN": (
        "[sweep]\n[sweep.space]\nlr = { low = 0.001, high = 0.01, step = nan }\n",
        "step must be a finite number",
    ),
    "a step Optuna cannot divide by": (
        "[sweep]\n[sweep.space]\nlr = { low = 0.001, high = 0.01, step = 1e-300 }\n",
        "too fine for Optuna",
    ),
    "a step wider than its range": (
        "[sweep]\n[sweep.space]\nlr = { low = 0.001, high = 0.01, step = 1.0 }\n",
        "wider than the range",
    ),
}


@pytest.mark.parametrize("case", sorted(SPACES))
def test_a_space_no_trial_could_draw_from_is_refused_by_check_at_once(tmp_path, case):
    space, says = SPACES[case]
    path = sweep_file(tmp_path, space)
    for args in (["--check"], []):  # the same line with or without --check: nothing trains
        refused(kcnn("sweep", path, *args, timeout=60), "[sweep.space]", says)
    assert not (tmp_path / "runs").exists()


def test_a_list_setting_is_searched_as_its_text(tmp_path):
    from kcnn.commands import sweep as sweeping

    path = sweep_file(tmp_path, '[sweep]\n[sweep.space]\nseeds = ["1,2", [3, 4]]\n')
    result = kcnn("sweep", path, "--check", timeout=60)
    refused(result, "a choice holds plain values")
    path = sweep_file(tmp_path, '[sweep]\n[sweep.space]\nseeds = ["1,2", 3]\n')
    plan = sweeping.load(path)
    assert plan.space["seeds"].values == ("1,2", 3)  # what Optuna's categorical takes
    sweeping.check_distributions(plan.space, str(path))
    assert plan.config({"seeds": "1,2"}, "x", "x").seeds == [1, 2]


OPTIONS = {
    "--confirm 101": (["--confirm", "101"], "--confirm and --seeds take 1 … 100"),
    "--seeds 0": (["--confirm", "1", "--seeds", "0"], "--seeds takes a count of at least 2"),
    "--seeds 1,1": (["--confirm", "1", "--seeds", "1,1"], "none twice"),
    "--confirm -1": (["--confirm", "-1"], "--confirm -1: give the number of best trials"),
    "--jobs 0": (["--jobs", "0"], "--jobs must be 1 … 64"),
    "--jobs 65": (["--jobs", "65"], "--jobs must be 1 … 64"),
    "not a URL": (["--storage", "bogus"], "not a database URL"),
    "in memory": (["--storage", "sqlite://"], "in-memory database"),
    "no such folder": (["--storage", "sqlite:///{tmp}/nowhere/study.db"], "does not exist"),
}


@pytest.mark.parametrize("case", sorted(OPTIONS))
def test_every_option_is_checked_before_anything_is_made_or_trained(tmp_path, case):
    args, says = OPTIONS[case]
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    path = sweep_file(tmp_path, PLAIN)
    refused(kcnn("sweep", path, *args, "--out", tmp_path / "new" / "deeper"), says)
    refused(kcnn("sweep", path, *args, "--check"), says)
    assert not (tmp_path / "new").exists() and not (tmp_path / "runs").exists()


def test_a_storage_that_cannot_be_opened_leaves_no_out_folder(tmp_path):
    fifo = tmp_path / "study.db"
    os.mkfifo(fifo)
    path = sweep_file(tmp_path, PLAIN)
    for storage, says in (
        (f"sqlite:///{fifo}", "FIFO"),
        (f"sqlite:///{tmp_path}", "a folder, not a database file"),
        ("postgresql://127.0.0.1:1/nothing", "cannot open the study"),
    ):
        out = tmp_path / "new" / "deeper"
        refused(kcnn("sweep", path, "--out", out, "--storage", storage), says)
        assert not (tmp_path / "new").exists(), storage


# --- sweep folders written through planted links ------------------------------------------------


def _sweep_folder(tmp_path: Path) -> tuple[Path, Path]:
    """The sweep file and its folder, holding the sweep.json this very file would write."""
    from kcnn.commands import sweep as sweeping
    from kcnn.runs.records import write_json

    path = sweep_file(tmp_path, PLAIN)
    plan = sweeping.load(path)
    plan.folder.mkdir(parents=True)
    write_json(plan.folder / sweeping.SWEEP_JSON, {"identity": plan.identity()})
    return path, plan.folder


def _elsewhere(tmp_path: Path) -> tuple[Path, bytes]:
    """A database of the user's own, elsewhere, that no sweep may touch."""
    import sqlite3

    theirs = tmp_path / "elsewhere" / "theirs.db"
    theirs.parent.mkdir()
    with contextlib.closing(sqlite3.connect(theirs)) as db:
        db.execute("create table mine (x)")
        db.commit()
    return theirs, theirs.read_bytes()


@pytest.mark.parametrize("name", ["study.db", "study.db-journal", "study.db-wal"])
def test_a_planted_link_beside_the_study_is_refused_and_nothing_is_written_through_it(
    tmp_path, name
):
    path, folder = _sweep_folder(tmp_path)
    theirs, before = _elsewhere(tmp_path)
    (folder / name).symlink_to(theirs)
    refused(kcnn("sweep", path), name, "symbolic link")
    assert theirs.read_bytes() == before
    assert sorted(p.name for p in folder.iterdir()) == sorted(["sweep.json", name])


def test_a_sweep_folder_that_is_a_link_is_refused_and_nothing_is_written_where_it_points(
    tmp_path,
):
    path = sweep_file(tmp_path, PLAIN)
    target = tmp_path / "elsewhere"
    target.mkdir()
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "sweep-tiny").symlink_to(target, target_is_directory=True)
    for args in ([], ["--check"]):
        refused(kcnn("sweep", path, *args), "sweep-tiny is a symbolic link")
    assert list(target.iterdir()) == []


def test_a_damaged_sweep_json_is_refused(tmp_path):
    path, folder = _sweep_folder(tmp_path)
    (folder / "sweep.json").write_text("[1, 2]")
    refused(kcnn("sweep", path), "sweep.json is damaged")
    (folder / "sweep.json").unlink()
    os.mkfifo(folder / "sweep.json")
    refused(kcnn("sweep", path), "sweep.json is damaged")


# --- two sweep files on one --storage -----------------------------------------------------------


def test_a_study_of_another_sweep_file_on_a_shared_storage_is_refused_before_any_trial(tmp_path):
    from kcnn.commands import sweep as sweeping

    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    first = sweep_file(tmp_path, PLAIN.replace("[sweep]\n", '[sweep]\nname = "shared"\n'), "a.toml")
    sweeping.open_study(sweeping.load(first), storage)  # the first file's study, made and claimed
    other = PLAIN.replace("[sweep]\n", '[sweep]\nname = "shared"\n').replace(
        "batch_size = [16, 32]", "lr = [0.01, 0.02]"
    )
    second = sweep_file(tmp_path, other, "b.toml")
    out = tmp_path / "second"
    refused(kcnn("sweep", second, "--storage", storage, "--out", out), "belongs to a sweep")
    study = optuna.load_study(study_name="shared", storage=storage)
    assert study.trials == [] and not out.exists()
    # a study of that name that no kcnn sweep claimed, holding trials, is not adopted either
    stranger = optuna.create_study(study_name="stranger", storage=storage, direction="maximize")
    stranger.enqueue_trial({"x": 1})
    third = sweep_file(tmp_path, PLAIN.replace("[sweep]\n", '[sweep]\nname = "stranger"\n'))
    refused(kcnn("sweep", third, "--storage", storage, "--out", out), "no sweep file recorded")
    assert len(optuna.load_study(study_name="stranger", storage=storage).trials) == 1


# --- kcnn compare SWEEP reads trials.json as untrusted -------------------------------------------


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    """One real, finished run (digits, one epoch)."""
    out = tmp_path_factory.mktemp("trained")
    done = kcnn("train", "lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60",
                "--out", out, "--name", "mine")  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (run,) = out.iterdir()
    return run


ROWS = {
    "an absolute path out": lambda outside: [{"state": "complete", "score": 1.0, "run": outside}],
    "a path up and out": lambda outside: [  # SWEEP/../outside is a real run folder
        {"state": "complete", "score": 1.0, "run": f"../{Path(outside).name}"}
    ],
    "a row that is a list": lambda outside: [[1, 2]],
    "a score that is text": lambda outside: [{"state": "complete", "score": "best", "run": "x"}],
    "a run that is a number": lambda outside: [{"state": "complete", "score": 1.0, "run": 7}],
    "trials that are a table": lambda outside: {"0": {}},
}


@pytest.mark.parametrize("case", sorted(ROWS))
def test_compare_never_follows_trials_json_out_of_the_sweep_nor_tracebacks(tmp_path, trained, case):
    sweep = tmp_path / "sweep-x"
    (sweep / "trial").mkdir(parents=True)
    (sweep / "comparison.json").write_text(json.dumps({"kind": "sweep", "config": {}}))
    outside = tmp_path / "outside"
    shutil.copytree(trained, outside)
    record = {"direction": "maximize", "trials": ROWS[case](str(outside))}
    (sweep / "trials.json").write_text(json.dumps(record))
    refused(kcnn("compare", sweep, "--out", tmp_path / "compared"), "trials.json is damaged")
    assert not (tmp_path / "compared").exists()


# --- MLflow stores that cannot work fail at once -------------------------------------------------

QUICK = ["lenet5", "--dataset", "digits", "--epochs", "1", "--limit", "60"]


@contextlib.contextmanager
def _silent_server():
    """An address that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept():
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(OSError):
                held.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for s in [*held, listener]:
            s.close()


def test_tracking_stores_that_cannot_work_fail_in_seconds_with_one_line(tmp_path):
    pytest.importorskip("mlflow")
    fifo = tmp_path / "fifo.db"
    os.mkfifo(fifo)
    (tmp_path / "folder.db").mkdir()
    out = tmp_path / "runs"
    for uri, says in (
        (f"sqlite:///{fifo}", "FIFO"),
        (f"sqlite:///{tmp_path / 'folder.db'}", "a folder, not a database file"),
        ("sqlite://", "in-memory database"),
    ):
        refused(kcnn("train", *QUICK, "--out", out, "--mlflow", uri, timeout=60), says)
    with _silent_server() as uri:
        refused(kcnn("train", *QUICK, "--out", out, "--mlflow", uri, timeout=60), "no answer")
    assert not out.exists()


def test_sqlite_urls_are_read_as_sqlalchemy_reads_them(tmp_path):
    from kcnn.errors import KcnnError
    from kcnn.runs import databases

    assert databases.sqlite_path("sqlite:///rel/x.db") == Path("rel/x.db")
    assert databases.sqlite_path("sqlite:////abs/x.db") == Path("/abs/x.db")
    assert databases.sqlite_path("sqlite+pysqlite:///x.db?timeout=5") == Path("x.db")
    assert databases.sqlite_path("postgresql://h/db") is None
    for memory in ("sqlite://", "sqlite:///:memory:"):
        with pytest.raises(KcnnError, match="in-memory"):
            databases.sqlite_path(memory)
    mine = tmp_path / "mine.db"
    mine.write_bytes(b"")
    (tmp_path / "named.db").symlink_to(mine)
    databases.check_sqlite(tmp_path / "named.db", "--mlflow", links=True)  # the user's own link
    with pytest.raises(KcnnError, match="symbolic link"):
        databases.check_sqlite(tmp_path / "named.db", "the sweep folder")  # a planted one


def test_a_server_that_answers_anything_is_a_server_and_one_that_never_answers_is_not():
    import http.server

    from kcnn.errors import KcnnError
    from kcnn.runs import databases

    class NotFound(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802  (http.server's name)
            self.send_error(404)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), NotFound)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        databases.check_server(f"http://127.0.0.1:{server.server_port}", "--mlflow", 5)
    finally:
        server.shutdown()
        server.server_close()
    with _silent_server() as uri, pytest.raises(KcnnError, match="no answer within 0.5 s"):
        databases.check_server(uri, "--mlflow", 0.5)
