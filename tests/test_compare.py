"""compare-apis: the equivalence proof (including genuinely different models caught, and where),
the three forms trained side by side, the report folder, and the CIFAR-10-unavailable error."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np
import pytest

from kcnn.commands.compare import _build_forms, prove_equivalent
from kcnn.engine.config import CompareConfig
from kcnn.errors import KcnnError, ModelMismatchError
from kcnn.models import forms
from kcnn.models.architectures import ARCHITECTURES, get
from kcnn.models.layers import BatchNorm, BlockSpec, Conv, Dense, Flatten, Pool
from kcnn.runs import records

APIS = ("sequential", "functional", "subclassed")
# A few seconds per form on two CPU cores: 120 shapes images, 32-image batches.
TINY = ("--dataset", "shapes", "--limit", "120", "--batch-size", "32")


def _batch(shape, n=8, seed=0):
    return np.random.default_rng(seed).random((n, *shape)).astype("float32")


def _mlp(hidden: int = 16, activation: str = "relu", extra: bool = False) -> keras.Model:
    layers = [keras.Input((6,)), keras.layers.Dense(hidden, activation=activation, name="hidden")]
    if extra:
        layers.append(keras.layers.Dense(hidden, name="extra"))
    layers.append(keras.layers.Dense(3, activation="softmax", name="out"))
    return keras.Sequential(layers)


# --- the proof ---------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["lenet5", "simple-cnn", "mnist-cnn"])
def test_three_forms_are_proven_the_same_network(arch):
    a = get(arch)
    models = {api: forms.build(arch, api, a.input_shape, 10) for api in APIS}
    before = {api: [w.copy() for w in m.get_weights()] for api, m in models.items()}
    proof = prove_equivalent(models, _batch(a.input_shape))

    assert proof.equivalent, proof.message()
    assert [r["params"] for r in proof.forms] == [a.reference_params] * 3
    assert all(layer["equal"] for layer in proof.layers)
    assert len(proof.layers) == len(forms.weight_shapes(models["sequential"]))
    assert all(r["max_abs_output_diff"] <= 1e-5 for r in proof.forms)
    # The check copies weights only for the comparison: every model keeps its own afterwards.
    for api, model in models.items():
        assert all(
            np.array_equal(x, y) for x, y in zip(before[api], model.get_weights(), strict=True)
        )
    text = proof.text()
    assert "sequential" in text and "subclassed" in text and "equivalent" in text


def test_a_layer_of_different_width_is_reported_with_its_shapes():
    proof = prove_equivalent({"a": _mlp(16), "b": _mlp(8)}, _batch((6,)))
    assert not proof.equivalent
    message = proof.message()
    assert "b has 83 parameters, a 163" in message  # 6·8+8 + 8·3+3 vs 6·16+16 + 16·3+3
    assert "layer hidden: weights 6×16, 16 in a but 6×8, 8 in b" in message
    assert [row["layer"] for row in proof.layers if not row["equal"]] == ["hidden", "out"]
    assert proof.forms[1]["max_abs_output_diff"] is None  # no copy between different structures
    with pytest.raises(ModelMismatchError) as caught:
        proof.check()
    assert caught.value.exit_code == 1


def test_a_layer_only_one_model_has_is_named():
    proof = prove_equivalent({"a": _mlp(), "b": _mlp(extra=True)}, _batch((6,)))
    assert not proof.equivalent
    assert "layer(s) extra only in b" in proof.message()
    row = next(r for r in proof.layer_rows() if r["layer"] == "extra")
    assert row["a"] == "missing" and row["same"] == "NO"


def test_same_shapes_but_different_computation_is_caught_by_the_outputs():
    # Equal parameters and weight shapes; only the activation differs — the output check sees it.
    proof = prove_equivalent(
        {"relu": _mlp(activation="relu"), "tanh": _mlp(activation="tanh")},
        _batch((6,), n=32) * 4 - 2,
    )
    assert proof.forms[0]["params"] == proof.forms[1]["params"]
    assert all(layer["equal"] for layer in proof.layers)
    assert not proof.equivalent
    assert proof.forms[1]["max_abs_output_diff"] > 1e-5
    assert "tanh's outputs differ by up to" in proof.message()


@dataclass(frozen=True)
class _Residual(BlockSpec):
    """conv → BatchNorm → + input: a block with a skip, so it is a Layer in the Sequential form."""

    filters: int = 4

    def parts(self):
        return {
            "conv": Conv(self.filters, 3, padding="same", activation=None, bias=False),
            "bn": BatchNorm(),
        }

    def wire(self, run, x):
        return run("bn", run("conv", x)) + x

    def output_shape(self, shape):
        return shape


def test_blocks_and_batchnorm_statistics_are_part_of_the_proof():
    specs = [
        Conv(4, 3, padding="same", name="stem"),
        _Residual(name="res1"),
        Pool(2, name="pool"),
        Flatten(name="flatten"),
        Dense(3, activation="softmax", name="out"),
    ]
    seq = forms.build_sequential("toy", specs, (8, 8, 3))
    fun = forms.build_functional("toy", specs, (8, 8, 3))
    # Moving statistics far from their initial 0/1: inference mode must use them, and they must be copied.
    bn = forms.leaves(seq)["res1_bn"]
    gamma, beta, mean, var = bn.get_weights()
    bn.set_weights([gamma, beta, mean + 3.0, var * 5.0])
    proof = prove_equivalent({"sequential": seq, "functional": fun}, _batch((8, 8, 3)))
    assert proof.equivalent, proof.message()
    assert "res1_bn" in [row["layer"] for row in proof.layers]
    # The moving statistics matter: with them reset in one model, the same check fails.
    fun_bn = forms.leaves(fun)["res1_bn"]
    for name, layer in forms.leaves(seq).items():
        if layer.weights:
            forms.leaves(fun)[name].set_weights(layer.get_weights())
    fun_bn.set_weights([gamma, beta, mean, var])
    x = _batch((8, 8, 3))
    diff = keras.ops.convert_to_numpy(seq(x, training=False)) - keras.ops.convert_to_numpy(
        fun(x, training=False)
    )
    assert float(np.abs(diff).max()) > 1e-5


FAST_ARCHS = {"lenet5", "simple-cnn", "mnist-cnn"}


@pytest.mark.parametrize(
    "arch",
    [
        name if name in FAST_ARCHS else pytest.param(name, marks=pytest.mark.slow)
        for name in ARCHITECTURES
    ],
)
def test_every_registered_architecture_passes_the_proof(arch):
    # Smallest input the network takes, 3 channels, 10 classes: the same code path compare-apis runs.
    side = get(arch).min_size(3, 10)
    models = {api: forms.build(arch, api, (side, side, 3), 10) for api in APIS}
    assert prove_equivalent(models, _batch((side, side, 3), n=2)).equivalent


def test_same_init_starts_every_form_from_the_first_forms_weights_and_independent_does_not():
    shape = (32, 32, 1)
    for same_init in (True, False):
        config = CompareConfig("lenet5", dataset="shapes", same_init=same_init).validate()
        models, seconds = _build_forms(config, shape, 10)
        assert set(seconds) == set(APIS) and all(s > 0 for s in seconds.values())
        first, second = models["sequential"].get_weights(), models["functional"].get_weights()
        equal = all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
        assert equal is same_init  # same seed → same draws; own seeds → different weights


# --- the command -------------------------------------------------------------------------------


def _only_folder(out: Path) -> Path:
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def test_compare_apis_same_init_writes_the_report_and_the_forms_agree(cli, tmp_path):
    result = cli("compare-apis", *TINY, "--epochs", "2", "--out", tmp_path, "--json")
    assert result.code == 0, result.err
    answer = json.loads(result.out)
    folder = _only_folder(tmp_path)
    assert answer["comparison"] == str(folder) and answer["command"] == "compare-apis"

    # proof: equal parameters, equal shapes, outputs within 1e-5
    proof = answer["proof"]
    assert proof["equivalent"] and len({f["params"] for f in proof["forms"]}) == 1
    assert all(f["max_abs_output_diff"] <= 1e-5 for f in proof["forms"])

    # same data order and same initial weights: the curves coincide (README), epoch for epoch
    accuracies = [row["test_accuracy"] for row in answer["forms"]]
    assert [row["form"] for row in answer["forms"]] == list(APIS)
    assert len(set(accuracies)) == 1
    assert answer["agreement"]["test_accuracy_spread"] == 0
    curves = [
        [
            {k: v for k, v in r.items() if k in ("loss", "accuracy", "val_loss", "val_accuracy")}
            for r in records.read_csv(folder / row["run_dir"] / "history.csv")
        ]
        for row in answer["forms"]
    ]
    assert curves[0] and all(c == curves[0] for c in curves[1:]), curves

    # the report files exist and parse
    rows = records.read_csv(folder / "comparison.csv")
    assert [r["form"] for r in rows] == list(APIS)
    for column in (
        "parameters",
        "test_loss",
        "test_accuracy",
        "best_val_accuracy",
        "build_seconds",
        "seconds_per_epoch",
        "images_per_second",
    ):
        values = [float(r[column]) for r in rows]
        assert all(np.isfinite(values)), column
    assert len({r["parameters"] for r in rows}) == 1
    md = (folder / "comparison.md").read_text()
    assert "## Proof before training" in md and "| conv1 |" in md and "Verdict" in md
    assert "curves_overlay.png" in md and "same initial weights" in md
    assert (folder / "curves_overlay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert records.read_json(folder / "proof.json")["equivalent"] is True
    assert records.read_json(folder / "comparison.json")["forms"] == answer["forms"]

    # each form's own, complete run folder inside the comparison folder
    for row in rows:
        run = folder / row["run_dir"]
        metrics = records.read_json(run / "metrics.json")
        config = records.read_json(run / "config.json")
        assert metrics["status"] == "completed" and metrics["api"] == row["form"]
        assert metrics["epochs_completed"] == 2 and (run / "model.keras").is_file()
        assert config["command"] == "train" and config["part_of"] == "compare-apis"
        assert config["init"] == "same"
        assert len(records.read_csv(run / "history.csv")) == 2


def test_compare_apis_prints_the_proof_table_and_independent_init_spreads(cli, tmp_path):
    result = cli(
        "compare-apis", "lenet5", *TINY, "--epochs", "1", "--independent-init", "--out", tmp_path
    )
    assert result.code == 0, result.err
    assert "proof before training" in result.out and "max abs output difference" in result.out
    assert (
        "| " not in result.out.split("proof before training")[1].split("equivalent")[0]
    )  # plain text table
    for layer in ("c1", "c3", "c5", "f6", "output"):
        assert f"\n{layer} " in result.out
    assert "independent initial weights" in result.out
    folder = _only_folder(tmp_path)
    losses = [float(r["test_loss"]) for r in records.read_csv(folder / "comparison.csv")]
    assert len(set(losses)) == 3  # three different starting points give three different results
    assert "seed-to-seed variation" in (folder / "comparison.md").read_text()


def _swap_subclassed_for(monkeypatch, other_arch: str):
    """Make the 'subclassed' form a genuinely different network, as a bug in a form would."""
    real_build = forms.build

    def build(arch, api, input_shape, classes):
        return real_build(other_arch if api == "subclassed" else arch, api, input_shape, classes)

    monkeypatch.setattr(forms, "build", build)


def test_a_form_that_differs_fails_with_exit_1_and_says_where(cli, tmp_path, monkeypatch):
    _swap_subclassed_for(monkeypatch, "lenet5")
    result = cli("compare-apis", *TINY, "--epochs", "1", "--out", tmp_path)
    assert result.code == 1
    error = result.err.strip().splitlines()[-1]
    assert error.startswith("error: the models are not the same network")
    assert "only in subclassed" in error and "conv1" in error
    assert "NO" in result.out and "missing" in result.out  # the table shows the differing layers
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing trained, nothing written

    result = cli("compare-apis", *TINY, "--epochs", "1", "--out", tmp_path, "--json")
    assert result.code == 1
    proof = json.loads(result.out)["proof"]
    assert proof["equivalent"] is False and any(
        "only in subclassed" in d for d in proof["differences"]
    )


def test_cifar10_unavailable_suggests_offline_data_sets(cli, tmp_path, no_download):
    result = cli("compare-apis", "--epochs", "1", "--out", tmp_path)
    assert result.code == 2
    lines = result.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: cifar10 is not in the Keras cache")
    assert "--dataset shapes" in lines[0] and "--dataset mnist-5k" in lines[0]
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "args, message",
    [
        (("--epochs", "0"), "--epochs must be a whole number"),
        (("--optimizer", "adma"), "did you mean 'adam'"),
        (
            ("--val-split", "1.5"),
            "--val-split must be a number above 0 below 1",
        ),
        (("simple-cnm",), "did you mean 'simple-cnn'"),
    ],
)
def test_bad_input_is_refused_before_any_work(cli, tmp_path, args, message):
    result = cli("compare-apis", *args, "--dataset", "shapes", "--out", tmp_path)
    assert result.code == 2 and message in result.err
    assert not tmp_path.exists() or not any(tmp_path.iterdir())


def test_compare_config_needs_two_forms():
    with pytest.raises(KcnnError, match="at least two"):
        CompareConfig(apis=("sequential", "sequential")).validate()
