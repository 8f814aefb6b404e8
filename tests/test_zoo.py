"""The architecture zoo: reference figures, the three forms as one network, Keras's own VGG,
multiply-adds, the smallest inputs, and a few real training steps for every architecture.

Budget: building the deep networks dominates. Each architecture's three forms are built once
(a module-scoped fixture, smallest allowed input) and shared by the tests that need them.
ResNet-101/152 repeat ResNet-50's bottleneck code at greater depth, so their Keras builds run
only with the slow tests; their parameter counts and multiply-adds are checked here from specs.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from kcnn.defaults import APIS
from kcnn.models import geometry
from kcnn.models.architectures import ARCHITECTURES, get

# The reference figures of each architecture (the papers' networks): (input, classes) → parameters
SPEC_PARAMS = {
    "lenet5": ((32, 32, 1), 10, 61_706),
    "simple-cnn": ((32, 32, 3), 10, 582_026),
    "mnist-cnn": ((28, 28, 1), 10, 3_363_594),
    "alexnet": ((227, 227, 3), 1000, 62_378_344),
    "vgg11": ((224, 224, 3), 1000, 132_863_336),
    "vgg13": ((224, 224, 3), 1000, 133_047_848),
    "vgg16": ((224, 224, 3), 1000, 138_357_544),
    "vgg19": ((224, 224, 3), 1000, 143_667_240),
    "resnet18": ((224, 224, 3), 1000, 11_689_512),
    "resnet34": ((224, 224, 3), 1000, 21_797_672),
    "resnet50": ((224, 224, 3), 1000, 25_557_032),
    "resnet101": ((224, 224, 3), 1000, 44_549_160),
    "resnet152": ((224, 224, 3), 1000, 60_192_808),
}
# He et al. 2015, Table 1: multiply-adds at 224×224
PAPER_MACS = {
    "resnet18": 1.8e9,
    "resnet34": 3.6e9,
    "resnet50": 3.8e9,
    "resnet101": 7.6e9,
    "resnet152": 11.3e9,
}
ZOO = [
    "alexnet",
    "zfnet",
    "vgg11",
    "vgg13",
    "vgg16",
    "vgg19",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "googlenet",
]
DEEP = {"resnet101", "resnet152"}  # same code as resnet50, only deeper: Keras builds are slow-only
CLASSES = 5


def test_every_zoo_architecture_is_registered():
    assert set(ZOO) <= set(ARCHITECTURES)
    assert set(SPEC_PARAMS) <= set(ARCHITECTURES)


@pytest.mark.parametrize("arch", sorted(SPEC_PARAMS))
def test_reference_params_from_specs(arch):
    """The learned parameters the specs describe equal the reference figure (and the registry's)."""
    shape, classes, expected = SPEC_PARAMS[arch]
    architecture = get(arch)
    assert (
        architecture.input_shape,
        architecture.reference_classes,
        architecture.reference_params,
    ) == (shape, classes, expected)
    assert (
        geometry.totals(geometry.trace(architecture.describe(classes), shape)).trainable_params
        == expected
    )


@pytest.mark.parametrize("arch", sorted(PAPER_MACS))
def test_resnet_multiply_adds_within_2_percent_of_the_paper(arch):
    a = get(arch)
    macs = geometry.totals(geometry.trace(a.describe(1000), (224, 224, 3))).macs
    assert abs(macs / PAPER_MACS[arch] - 1) <= 0.02, (
        f"{arch}: {macs:,} multiply-adds"
    )  # README: "within 2%"


def test_bottleneck_stride_sits_in_the_first_conv():
    """The paper's placement (not torchvision's v1.5): the 1×1 reduce of conv3_1 strides."""
    block = next(s for s in get("resnet50").describe(1000) if s.name == "conv3_1")
    parts = block.parts()
    assert (parts["conv1"].stride, parts["conv2"].stride, parts["proj"].stride) == (2, 1, 2)
    convs = [p for p in parts.values() if type(p).__name__ == "Conv"]
    assert convs and not any(c.bias for c in convs)  # BatchNorm follows every one


def test_smallest_inputs():
    sizes = {arch: get(arch).min_size(3, 10) for arch in ZOO}
    # AlexNet/ZFNet by arithmetic (the last 3/2 pool needs a 3×3 map); GoogLeNet's ceil-mode
    # pools by arithmetic too (its 4th pool takes a 2×2 map); the others stride 32
    assert sizes == {
        "alexnet": 67,
        "zfnet": 53,
        "googlenet": 31,
        **{a: 32 for a in ZOO if a not in ("alexnet", "zfnet", "googlenet")},
    }


# ---- Keras builds: every form, smallest allowed input ------------------------------------------


def _fast_or_slow(archs):
    return [pytest.param(a, marks=pytest.mark.slow) if a in DEEP else a for a in archs]


@pytest.fixture(scope="module", params=_fast_or_slow(ZOO + ["lenet5", "simple-cnn", "mnist-cnn"]))
def forms3(request):
    """(arch, input shape, {api: model}) at the architecture's smallest allowed input."""
    from kcnn.models import forms

    arch = request.param
    side = get(arch).min_size(3, CLASSES)
    shape = (side, side, 3)
    models = {api: forms.build(arch, api, shape, CLASSES) for api in APIS}
    yield arch, shape, models
    del models
    import keras

    keras.backend.clear_session()


def _randomize(model, seed):
    """Make what Keras initialises to constants random too — biases and every BatchNorm weight,
    moving statistics included — so equal outputs mean equal networks (kernels already are)."""
    import keras

    from kcnn.models import forms

    rng = np.random.default_rng(seed)
    for layer in forms.leaves(model).values():
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.set_weights(
                [rng.uniform(0.5, 1.5, w.shape).astype("float32") for w in layer.get_weights()]
            )
        elif getattr(layer, "bias", None) is not None:
            layer.bias.assign(rng.normal(0, 0.05, layer.bias.shape).astype("float32"))


def test_three_forms_are_one_network(forms3):
    """Same weight shapes; one form's weights copied into the others give the same outputs
    (inference mode, so BatchNorm uses its — randomised — moving statistics)."""
    from kcnn.models import forms

    arch, shape, models = forms3
    source = models["functional"]
    _randomize(source, seed=7)
    shapes = forms.weight_shapes(source)
    x = np.random.default_rng(0).uniform(0, 1, (3, *shape)).astype("float32")
    reference = np.asarray(source(x, training=False))
    assert reference.shape == (3, CLASSES) and np.isfinite(reference).all()
    for api in ("sequential", "subclassed"):
        target = models[api]
        assert forms.weight_shapes(target) == shapes
        forms.copy_weights(source, target)
        out = np.asarray(target(x, training=False))
        assert np.max(np.abs(out - reference)) <= 1e-5, f"{arch} {api}"


def test_keras_counts_equal_the_specs_in_every_form(forms3):
    arch, shape, models = forms3
    expected = geometry.totals(geometry.trace(get(arch).describe(CLASSES), shape))
    for api, model in models.items():
        trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
        assert (model.count_params(), trainable) == (expected.params, expected.trainable_params), (
            api
        )


def test_trains_a_few_steps_at_its_smallest_size(forms3):
    """Real gradient steps (eagerly: tracing a deep network's train step costs far more than
    two steps on 2 CPU cores). The form that trains rotates so each form trains somewhere."""
    import keras

    arch, shape, models = forms3
    api = APIS[sorted(ZOO + ["lenet5", "simple-cnn", "mnist-cnn"]).index(arch) % 3]
    model = models[api]
    keras.utils.set_random_seed(1)
    before = [w.numpy().copy() for w in model.trainable_weights]
    model.compile(
        optimizer=keras.optimizers.SGD(0.01),
        loss="sparse_categorical_crossentropy",
        run_eagerly=True,
    )
    x = np.random.default_rng(1).uniform(0, 1, (4, *shape)).astype("float32")
    history = model.fit(x, np.arange(4) % CLASSES, batch_size=2, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"]).all()
    changed = sum(
        not np.array_equal(b, w.numpy())
        for b, w in zip(before, model.trainable_weights, strict=True)
    )
    assert changed == len(before), f"{arch} ({api}): {len(before) - changed} weights did not move"


def test_functional_graph_shows_skips_and_branches():
    from kcnn.models import forms

    resnet = forms.build("resnet18", "functional", (32, 32, 3), CLASSES)
    add = resnet.get_layer("conv3_1_add")
    # the residual sum has two inbound tensors: the block's path and the projected skip
    assert sorted(t._keras_history.operation.name for t in add.input) == [
        "conv3_1_bn2",
        "conv3_1_proj_bn",
    ]
    inception = forms.build("googlenet", "functional", (32, 32, 3), CLASSES)
    concat = inception.get_layer("inception3a_concat")
    assert [t._keras_history.operation.name for t in concat.input] == [
        "inception3a_1x1",
        "inception3a_3x3",
        "inception3a_5x5",
        "inception3a_pool_proj",
    ]
    sequential = forms.build("resnet18", "sequential", (32, 32, 3), CLASSES)
    assert [type(layer).__name__ for layer in sequential.layers].count("Block") == 8


def test_saved_sequential_resnet_reloads(tmp_path):
    import keras

    from kcnn.models import forms

    model = forms.build("resnet18", "sequential", (32, 32, 3), CLASSES)
    _randomize(model, seed=3)
    x = np.random.default_rng(2).uniform(0, 1, (2, 32, 32, 3)).astype("float32")
    model.save(tmp_path / "model.keras")
    again = keras.saving.load_model(tmp_path / "model.keras")
    assert (
        np.max(np.abs(np.asarray(again(x, training=False)) - np.asarray(model(x, training=False))))
        <= 1e-6
    )


# ---- Keras's own VGG ---------------------------------------------------------------------------


@pytest.mark.parametrize("arch,api", [("vgg16", "subclassed"), ("vgg19", "sequential")])
def test_vgg_param_counts_equal_keras_applications(arch, api):
    import keras

    from kcnn.models import forms

    reference = {"vgg16": keras.applications.VGG16, "vgg19": keras.applications.VGG19}[arch](
        weights=None
    )
    expected = reference.count_params()
    del reference
    ours = forms.build(arch, api, (224, 224, 3), 1000)
    assert ours.count_params() == expected == SPEC_PARAMS[arch][2]


def test_vgg16_takes_keras_applications_weights_layer_for_layer():
    import keras

    from kcnn.models import forms

    theirs = keras.applications.VGG16(weights=None, input_shape=(32, 32, 3), classes=CLASSES)
    ours = forms.build("vgg16", "functional", (32, 32, 3), CLASSES)
    their_layers = [layer for layer in theirs.layers if layer.weights]
    our_layers = [layer for layer in forms.leaves(ours).values() if layer.weights]
    assert [layer.name for layer in our_layers] == [layer.name for layer in their_layers]
    for mine, theirs_layer in zip(our_layers, their_layers, strict=True):
        mine.set_weights(theirs_layer.get_weights())
    x = np.random.default_rng(4).uniform(0, 255, (2, 32, 32, 3)).astype("float32")
    assert (
        np.max(np.abs(np.asarray(ours(x, training=False)) - np.asarray(theirs(x, training=False))))
        <= 1e-5
    )


# ---- the command line --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "arch,api,shape",
    [
        ("alexnet", "sequential", "227,227,3"),
        ("resnet50", "functional", "224,224,3"),
        ("resnet18", "subclassed", "224,224,3"),
    ],
)
def test_summary_reports_the_reference_figures(cli, arch, api, shape):
    r = cli("summary", arch, "--api", api, "--input-shape", shape, "--classes", "1000", "--json")
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["trainable_params"] == SPEC_PARAMS[arch][2] == report["reference_params"]
    assert report["reference_match"] is True
    assert (
        report["total_macs"]
        == geometry.totals(
            geometry.trace(get(arch).describe(1000), tuple(map(int, shape.split(","))))
        ).macs
    )
    assert report["shape_check"]["checked"] > 0 and report["shape_check"]["mismatches"] == []
    layers = {row["name"]: row for row in report["layers"]}
    first = layers["conv1"]
    assert first["macs"] > 0 and first["receptive_field"] == (11 if arch == "alexnet" else 7)


def test_summary_text_shows_the_formula_and_costs(cli):
    r = cli("summary", "alexnet")
    assert r.code == 0, r.err
    assert "⌊(227 + 2·0 − 11)/4⌋ + 1 = 55" in r.out
    assert "mult-adds" in r.out and "recept." in r.out
    assert "all 8 conv and pooling layers equal" in r.out


def test_summary_reports_a_shape_mismatch_loudly(monkeypatch):
    """If Keras and the formula ever disagreed (here: a spec that miscounts), it says so."""
    from kcnn.models import layers, summary

    real = layers.conv_out
    monkeypatch.setattr(
        layers, "conv_out", lambda n, k, s, p, ceil=False: real(n, k, s, p, ceil) + (k == 11)
    )
    report = summary.summarize("alexnet", "sequential", (227, 227, 3), 10)
    assert [m["layer"] for m in report["shape_check"]["mismatches"]] == ["conv1"]
    assert "SHAPE MISMATCH at conv1" in report["text"]


@pytest.mark.parametrize(
    "args,smallest",
    [
        (("train", "vgg11", "--dataset", "mnist-5k", "--image-size", "16"), 32),
        (("train", "resnet18", "--dataset", "digits", "--image-size", "8"), 32),
        (("summary", "alexnet", "--input-shape", "64,64,3"), 67),
    ],
)
def test_too_small_input_is_refused_with_the_smallest_size(cli, tmp_path, args, smallest):
    r = cli(*args, "--out", str(tmp_path)) if args[0] == "train" else cli(*args)
    assert r.code == 2
    assert f"the smallest input that works is {smallest}×{smallest}" in r.err
    assert len(r.err.strip().splitlines()) == 1
    assert not list(tmp_path.iterdir())  # refused before any run folder was made


def test_list_models_shows_the_zoo(cli):
    r = cli("list", "models", "--json")
    assert r.code == 0
    models = {m["name"]: m for m in json.loads(r.out)["models"]}
    assert models["resnet50"]["family"] == "ResNet" and models["resnet50"]["year"] == 2015
    assert models["alexnet"]["reference_input"] == [227, 227, 3]
    assert models["vgg19"]["reference_params"] == 143_667_240
    text = cli("list", "models").out
    assert "googlenet" in text and "62,378,344" in text and "227×227×3" in text


def test_train_resnet_end_to_end_with_resize(cli, tmp_path):
    """`kcnn train` feeds 8×8 digits to ResNet-18 resized to 32×32 in the pipeline, and the
    saved Sequential model (blocks inside) reloads with the same predictions."""
    import keras

    r = cli(
        "train",
        "resnet18",
        "--dataset",
        "digits",
        "--image-size",
        "32",
        "--limit",
        "60",
        "--epochs",
        "1",
        "--batch-size",
        "16",
        "--out",
        str(tmp_path),
        "--json",
    )
    assert r.code == 0, r.err
    metrics = json.loads(r.out)["runs"][0]
    assert metrics["status"] == "completed"
    run_dir = tmp_path / next(p.name for p in tmp_path.iterdir())
    config = json.loads((run_dir / "config.json").read_text())
    assert config["input_shape"] == [32, 32, 1] and config["fit"] == "resize"
    model = keras.saving.load_model(run_dir / "model.keras")
    assert model.count_params() == metrics["params"]["total"]


# ---- exhaustive, slow ---------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("api", APIS)
@pytest.mark.parametrize("arch", sorted(SPEC_PARAMS))
def test_summary_reference_figures_every_api(cli, arch, api):
    shape, classes, expected = SPEC_PARAMS[arch]
    r = cli(
        "summary",
        arch,
        "--api",
        api,
        "--input-shape",
        ",".join(map(str, shape)),
        "--classes",
        str(classes),
        "--json",
    )
    assert r.code == 0, r.err
    report = json.loads(r.out)
    assert report["trainable_params"] == expected
    assert report["shape_check"]["mismatches"] == []
