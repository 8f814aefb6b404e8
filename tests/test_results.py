"""`make results`: the tables of experiments/RESULTS.md, experiments/README.md and README.md are
exactly what the kept records (experiments/records/) give, and no figure there lacks a record."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
from scipy.stats import t as student

ROOT = Path(__file__).parent.parent


def _script():
    spec = importlib.util.spec_from_file_location("results", ROOT / "experiments" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_committed_tables_are_what_the_records_give():
    results = _script()
    for path in results.DOCUMENTS:
        text = path.read_text(encoding="utf-8")
        assert results.rewrite(text, results.blocks()) == text, (
            f"{path.name} is stale: make results"
        )
    assert results.main(["--check"]) == 0


def test_every_file_has_its_block_and_every_record_is_small():
    results = _script()
    text = (ROOT / "experiments" / "RESULTS.md").read_text(encoding="utf-8")
    for toml in sorted((ROOT / "experiments").glob("*.toml")):
        assert f"<!-- results:file:{toml.name} -->" in text
    for path in results.RECORDS.glob("*/*.json"):
        assert path.stat().st_size < 4096, path
        data = json.loads(path.read_text())
        assert {"file", "run", "group", "seed", "settings", "metrics", "recorded"} <= set(data)


def test_a_group_figure_is_the_mean_and_t_interval_of_its_records():
    results = _script()
    found = results.records()
    for name, kept in found.items():
        table = results._file_table(name, kept)
        for group, rows in results._groups(kept).items():
            x = np.array([r["metrics"]["test_accuracy"] for r in rows])
            mean = x.sum() / x.size
            if x.size > 1:
                sd = math.sqrt(((x - mean) ** 2).sum() / (x.size - 1))
                half = student.ppf(0.975, x.size - 1) * sd / math.sqrt(x.size)
                assert f"{mean:.4f} ± {half:.4f} (n = {x.size})" in table, (name, group)
            else:
                assert f"{mean:.4f} (n = 1)" in table


def test_a_file_without_records_says_how_to_make_them():
    results = _script()
    text = results._file_table("recipe-x.toml", [])
    assert "No records" in text and "kcnn run experiments/recipe-x.toml" in text


def _copy(tmp_path: Path) -> Path:
    """The experiment library and README in a folder of their own: the script rewrites there."""
    import shutil

    shutil.copytree(ROOT / "experiments", tmp_path / "experiments")
    shutil.copy(ROOT / "README.md", tmp_path / "README.md")
    return tmp_path / "experiments"


def _make_results(folder: Path, *args: str):
    import os
    import subprocess
    import sys

    return subprocess.run(
        [sys.executable, str(folder / "results.py"), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def test_a_damaged_record_is_one_error_line_and_exit_2(tmp_path):
    folder = _copy(tmp_path)
    kept = sorted((folder / "records").glob("*/*.json"))[0]
    record = json.loads(kept.read_text())
    before = (folder / "RESULTS.md").read_text()
    for damage in ("not json", json.dumps([record]), json.dumps({**record, "metrics": []}),
                   json.dumps({**record, "seed": "83"}),
                   json.dumps({**record, "metrics": {**record["metrics"], "test_loss": None}})):  # fmt: skip
        kept.write_text(damage)
        done = _make_results(folder)
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and kept.name in lines[0], lines
    assert (folder / "RESULTS.md").read_text() == before  # nothing half-written


def test_a_record_name_with_a_pipe_or_a_newline_stays_in_its_cell(tmp_path):
    folder = _copy(tmp_path)
    kept = sorted((folder / "records").glob("*/*.json"))[0]
    record = json.loads(kept.read_text())
    record["group"] = record["run"] = "evil | name\nwith `ticks`"
    kept.write_text(json.dumps(record))
    done = _make_results(folder)
    assert done.returncode == 0, done.stderr
    text = (folder / "RESULTS.md").read_text()
    rows = [line for line in text.splitlines() if "evil" in line]
    assert rows and all("with" in line for line in rows)  # the newline did not end the row
    table = [line for line in rows if line.startswith("| ")]
    assert table and all(line.replace("\\|", "").count("|") == 8 for line in table)
