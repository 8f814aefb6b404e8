"""Looking inside models without a trained run: Grad-CAM through a branched (ResNet) graph in all
three API forms, and TensorBoard tracking."""

from __future__ import annotations

import numpy as np
import pytest


def _loaded(model, shape):
    from kcnn.runs.browse import RunInfo
    from kcnn.use.predict import LoadedRun

    info = RunInfo(folder=None, config={"classes": ["a", "b", "c"]}, metrics=None)
    return LoadedRun(info, model, shape, shape, lambda x: np.asarray(x, np.float32) / 255.0)


@pytest.mark.slow  # ~30 s: three ResNet-18s
def test_grad_cam_walks_a_branched_network_the_same_in_every_form(tmp_path):
    """ResNet-18's Functional form is a graph with skips (entered through a sub-model); its
    Sequential and subclassed forms hold the residual blocks as Block layers. With the same
    weights all three give the same heat map, feature maps and filters."""
    from kcnn.models import forms
    from kcnn.use import visualize

    shape = (32, 32, 3)
    models = {api: forms.build("resnet18", api, shape, 3) for api in forms.APIS}
    for api in ("functional", "subclassed"):
        forms.copy_weights(models["sequential"], models[api])
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    cams = {}
    for api, model in models.items():
        loaded = _loaded(model, shape)
        cams[api], predicted, probabilities, layer = visualize.grad_cam(loaded, image)
        assert cams[api].shape[0] > 1 and 0 <= predicted < 3
        assert visualize.filters_png(model, tmp_path / f"{api}-filters.png") == "conv1"
    np.testing.assert_allclose(cams["functional"], cams["sequential"], atol=1e-4)
    np.testing.assert_allclose(cams["subclassed"], cams["sequential"], atol=1e-4)
    stages = visualize.feature_maps_png(
        _loaded(models["functional"], shape), image, tmp_path / "f.png"
    )
    assert 1 < len(stages) <= visualize.MAX_MAPS


def test_tensorboard_callback_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")  # a dependency of `--tensorboard`
    import keras

    from kcnn.runs.tracking import TENSORBOARD, tensorboard_callback

    model = keras.Sequential(
        [
            keras.Input((8, 8, 1)),
            keras.layers.Conv2D(2, 3),
            keras.layers.Flatten(),
            keras.layers.Dense(2),
        ]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    x = np.random.default_rng(0).random((8, 8, 8, 1)).astype("float32")
    y = np.arange(8) % 2
    model.fit(
        x,
        y,
        epochs=2,
        validation_data=(x, y),
        verbose=0,
        callbacks=[tensorboard_callback(tmp_path, histograms=True)],
    )
    events = list((tmp_path / TENSORBOARD).rglob("events.out.tfevents.*"))
    assert {p.parent.name for p in events} == {"train", "validation"}
    assert all(p.stat().st_size > 0 for p in events)


@pytest.mark.parametrize("mode", ["RGBA", "P", "LA", "I;16", "1", "CMYK"])
def test_read_image_any_mode_to_the_data_form(tmp_path, mode):
    from PIL import Image

    from kcnn.use.predict import read_image

    rgb = np.random.default_rng(2).integers(0, 255, (13, 21, 3), dtype=np.uint8)
    path = tmp_path / f"x.{'jpg' if mode == 'CMYK' else 'png'}"
    im = Image.fromarray(rgb)
    if mode == "I;16":
        im = Image.fromarray(rgb[..., 0].astype(np.uint16) * 257)
    else:
        im = im.convert(mode)
    im.save(path)
    for shape in ((8, 8, 1), (32, 32, 3)):
        a = read_image(path, shape)
        assert a.shape == shape and a.dtype == np.uint8
