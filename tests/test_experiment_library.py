"""The experiment library (experiments/*.toml): every file checks, every offline file runs without a
network at a tiny size, and the library's two documents account for every file."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

FOLDER = Path(__file__).parent.parent / "experiments"
FILES = sorted(FOLDER.glob("*.toml"))

# A tiny size for every run: 2 epochs (the recipes warm up for 1, which needs more than 1 epoch),
# a few images, few drawn shapes. `--set` changes only the runs that have the key; every command has these.
TINY = {"epochs": 2, "limit": 96, "batch_size": 32, "shapes_count": 240, "seeds": 2}


def _runs(path: Path) -> list[dict]:
    return tomllib.loads(path.read_text(encoding="utf-8"))["run"]


def _offline(path: Path) -> bool:
    """True when every run of the file needs nothing from a network: an offline data set, and for
    transfer no ImageNet weights (which come from a download)."""
    from kcnn.data.datasets import DATASETS

    for run in _runs(path):
        dataset = run.get("dataset", "cifar10" if run["command"] == "transfer" else "mnist")
        if dataset not in DATASETS or not DATASETS[dataset].offline:
            return False
        if run["command"] == "transfer" and run.get("weights", "imagenet") == "imagenet":
            return False
    return True


OFFLINE = [p for p in FILES if _offline(p)]
ONLINE = [p for p in FILES if not _offline(p)]


def test_the_library_holds_each_seed_online_and_offline_plus_recipes():
    names = {p.stem for p in FILES}
    for seed in (
        "seed000-lenet5",
        "seed003-compare-apis",
        "seed003-transfer",
        "seed004-mnist-cnn",
    ):
        assert seed in names and f"{seed}-quick" in names
    assert "recipe-mnist5k" in names
    # the naming tells which files need a network: the seed's own settings on the real data
    assert {p.stem for p in OFFLINE} == {
        n for n in names if n.endswith("-quick") or n.startswith("recipe-")
    }


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name)
def test_every_file_says_what_it_is_for(path):
    # that every file passes `kcnn run --check` is tests/test_experiments.py's
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    assert len(data["description"]) > 40 and data["run"]


def test_the_mnist5k_recipe_file_sets_bare_against_the_good_recipe():
    runs = {r["name"]: r for r in _runs(FOLDER / "recipe-mnist5k.toml")}
    good = runs["mnist5k-recipe-60"]
    assert good["dataset"] == "mnist-5k" and good["arch"] == "mnist-cnn"
    assert (good["optimizer"], good["schedule"], good["augment"]) == ("adamw", "cosine", "standard")
    assert good["label_smoothing"] > 0 and good["weight_decay"] > 0
    bare = [r for r in runs.values() if r is not good]
    assert bare and all(r.get("augment", "none") == "none" for r in bare)
    assert all(r["dataset"] == "mnist-5k" for r in bare)


def _slow(path: Path) -> bool:
    """Transfer, and the recipe files (the three recipe comparisons and the ten recipe-effect
    files, two or three groups each): their tiny run is the slow suite's, `kcnn run --check` of
    each the fast one's. The seed posts' quick files stay in the fast suite."""
    return "transfer" in path.stem or path.stem.startswith("recipe-")


# What a file needs besides TINY to run at 2 epochs (it averages the last 5).
EXTRA = {"recipe-effect-average-last.toml": {"average_last": 2}}


@pytest.mark.parametrize(
    "path",
    [pytest.param(p, marks=pytest.mark.slow) if _slow(p) else p for p in OFFLINE],
    ids=lambda p: p.name,
)
def test_every_offline_file_runs_without_a_network(cli, no_download, tmp_path, path):
    tiny = {**TINY, **EXTRA.get(path.name, {})}
    sets = [a for key, value in tiny.items() for a in ("--set", f"{key}={value}")]
    result = cli("run", path, *sets, "--set", f"out={tmp_path}", "--json")
    assert result.code == 0, result.err
    summaries = json.loads(result.out)["runs"]
    runs = [s for s in summaries if s["command"] != "compare"]
    assert len(runs) == len(_runs(path))
    for summary in runs:
        for run_dir in summary["run_dirs"]:
            metrics = json.loads((Path(run_dir) / "metrics.json").read_text())
            assert 0 <= metrics["test_accuracy"] <= 1
            assert json.loads((Path(run_dir) / "config.json").read_text())["epochs"] == 2
    compared = [s for s in summaries if s["command"] == "compare"]
    assert len(compared) == (1 if len(runs) > 1 else 0)
    if compared:
        assert Path(compared[0]["comparison"]).is_dir()


@pytest.mark.parametrize("document", ["README.md", "RESULTS.md"])
def test_the_documents_name_every_file(document):
    text = (FOLDER / document).read_text(encoding="utf-8")
    for path in FILES if document == "README.md" else OFFLINE:
        assert path.name in text, f"{document} does not mention {path.name}"
