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
