"""Looking inside a trained network: first-layer filters, feature maps, Grad-CAM.

Works the same on every form a run's model can take. A model is walked as a chain of stages:
a Sequential's layers, a subclassed `DescribedCNN`'s `.stages`, a Functional model whose graph is
a chain (a transfer model: image -> backbone -> pooling -> head). A stage that is itself a
branched Functional model (a ResNet backbone, a Functional ResNet) is entered through a
sub-model that also outputs the conv layers wanted inside it. Running the chain eagerly under a
GradientTape gives Grad-CAM its gradients (Selvaraju et al. 2017, arXiv:1610.02391).
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from kcnn.use.predict import LoadedRun

MAX_MAPS = 8  # feature-map pictures per image (evenly chosen among the conv stages)
MAX_CHANNELS = 16  # channels shown per feature map
MAX_FILTERS = 64

FILTERS, FEATURE_MAPS, GRAD_CAM = "filters.png", "feature_maps.png", "grad_cam.png"


def _is_conv(layer) -> bool:
    import keras

    from kcnn.models.blocks import Block

    kinds = (
        keras.layers.Conv2D,
        keras.layers.DepthwiseConv2D,
        keras.layers.SeparableConv2D,
        Block,
    )
    return isinstance(layer, kinds)


def _stages(model) -> list | None:
    """The model as a chain of layers, or None if its graph branches."""
    import keras

    from kcnn.models.forms import DescribedCNN

    if isinstance(model, DescribedCNN):
        return list(model.stages)
    if isinstance(model, keras.Sequential):
        return list(model.layers)
    layers = [la for la in model.layers if not isinstance(la, keras.layers.InputLayer)]
    previous = model.inputs[0]
    for layer in layers:
        nodes = layer._inbound_nodes
        if len(nodes) != 1 or [id(t) for t in nodes[0].input_tensors] != [id(previous)]:
            return None
        (previous,) = nodes[0].output_tensors
    return layers if previous is model.outputs[0] else None


def conv_layers(model, merges: bool = False) -> list:
    """Every conv layer (or Block) of a model in order, nested models and chains opened.

    `merges` adds, inside branched graphs, every layer with a 4-D output (Add, Concatenate,
    activations): where a chain form holds a whole residual or inception Block, the Functional
    form's equivalent of that Block's output is such a layer, not a conv.
    """
    import keras

    stages = _stages(model)
    if stages is None:
        return [
            la
            for la in model.layers
            if _is_conv(la)
            or (
                merges
                # padding only reshapes a map: the padded map is not a feature of its own
                and not isinstance(la, (keras.layers.InputLayer, keras.layers.ZeroPadding2D))
                and len(la.output.shape) == 4
            )
        ]
    found = []
    for layer in stages:
        if _is_conv(layer):
            found.append(layer)
        elif isinstance(layer, keras.Model):
            found += conv_layers(layer, merges)
    return found


def _leaf_convs(layer) -> list:
    from kcnn.models.blocks import Block

    return [la for la in layer.leaves() if _is_conv(la)] if isinstance(layer, Block) else [layer]


def run(model, x, wanted: list) -> tuple[dict[int, object], object]:
    """Output of `model` on batch `x` and of each layer in `wanted` (by id), eagerly, so a
    GradientTape around this call sees every step."""
    import keras

    taps: dict[int, object] = {}
    ids = {id(la) for la in wanted}
    stages = _stages(model)
    if stages is None:
        inside = [la for la in model.layers if id(la) in ids]
        sub = keras.Model(model.inputs, [*(la.output for la in inside), model.outputs[0]])
        *maps, out = sub(x, training=False)
        taps.update({id(la): m for la, m in zip(inside, maps, strict=True)})
        return taps, out
    for layer in stages:
        if isinstance(layer, keras.Model):
            inner, x = run(layer, x, wanted)
            taps.update(inner)
        else:
            x = layer(x, training=False)
            if id(layer) in ids:
                taps[id(layer)] = x
    return taps, x


def _literal(draw):
    """Make `draw`'s figure with every text in it drawn literally (kcnn.runs.plots.literal_text):
    class and layer names come from the run, and a `$` in them is not mathtext."""

    @functools.wraps(draw)
    def drawn(*args, **kwargs):
        from kcnn.runs import plots

        with plots.literal_text():
            return draw(*args, **kwargs)

    return drawn


def _label(name: object) -> str:
    from kcnn.runs import plots

    return plots.label(name)


@_literal
def _grid(images: list[np.ndarray], titles: list[str], path: Path, title: str, cmap="viridis"):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(images)
    cols = min(n, 8)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(1.3 * cols, 1.4 * rows + 0.5), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, label in zip(axes.flat, images, titles, strict=False):
        ax.imshow(image, cmap=None if image.ndim == 3 else cmap, interpolation="nearest")
        ax.set_title(_label(label), fontsize=6)
    fig.suptitle(_label(title), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def _unit(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a, dtype=float)


def filters_png(model, path: Path) -> str:
    """The first conv layer's kernels: in colour when it reads 3 channels, else in grey."""
    first = _leaf_convs(conv_layers(model)[0])[0]
    kernel = np.asarray(first.get_weights()[0])  # (kh, kw, in, out) (depthwise: (kh, kw, in, 1))
    count = min(kernel.shape[-1], MAX_FILTERS)
    images = []
    for i in range(count):
        k = kernel[..., i]
        images.append(_unit(k) if k.shape[-1] == 3 else _unit(k.mean(axis=-1)))
    _grid(
        images,
        [str(i) for i in range(count)],
        path,
        f"{first.name}: {count} of {kernel.shape[-1]} filters {kernel.shape[0]}×{kernel.shape[1]}",
        cmap="gray",
    )
    return first.name


def _chosen(layers: list) -> list:
    if len(layers) <= MAX_MAPS:
        return layers
    picks = np.linspace(0, len(layers) - 1, MAX_MAPS).round().astype(int)
    return [layers[i] for i in sorted(set(picks))]


@_literal
def feature_maps_png(loaded: LoadedRun, image: np.ndarray, path: Path) -> list[str]:
    """Up to MAX_CHANNELS channels of the maps after each chosen conv stage, one row each."""
    chosen = _chosen(conv_layers(loaded.model))
    taps, _ = run(loaded.model, loaded.prepare(image[None]), chosen)
    pictures, titles = [], []
    for layer in chosen:
        maps = np.asarray(taps[id(layer)])[0]
        shown = min(maps.shape[-1], MAX_CHANNELS)
        for c in range(MAX_CHANNELS):
            pictures.append(_unit(maps[..., c]) if c < shown else np.ones((1, 1)))
            titles.append(f"{layer.name}:{c}" if c < shown else "")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = len(chosen)
    fig, axes = plt.subplots(
        rows, MAX_CHANNELS, figsize=(0.8 * MAX_CHANNELS, 0.95 * rows + 0.5), squeeze=False
    )
    for ax, picture, layer_title in zip(axes.flat, pictures, titles, strict=True):
        ax.axis("off")
        if layer_title:
            ax.imshow(picture, cmap="viridis", interpolation="nearest")
    for r, layer in enumerate(chosen):
        shape = "×".join(map(str, np.asarray(taps[id(layer)]).shape[1:]))
        axes[r, 0].set_title(_label(f"{layer.name} ({shape})"), fontsize=6, loc="left")
    fig.suptitle("feature maps, first channels of each conv stage", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return [la.name for la in chosen]


def grad_cam(loaded: LoadedRun, image: np.ndarray) -> tuple[np.ndarray, int, np.ndarray]:
    """(heatmap in 0..1 at the conv map's size, predicted class, probabilities, conv layer)."""
    import tensorflow as tf

    convs = conv_layers(loaded.model, merges=True)
    x = tf.convert_to_tensor(loaded.prepare(image[None]))
    with tf.GradientTape() as tape:
        taps, probabilities = run(loaded.model, x, convs)
        # the last feature map with a spatial extent (LeNet-5's C5 is 1×1: nothing to localise)
        spatial = [la for la in convs if np.prod(taps[id(la)].shape[1:3]) > 1] or convs
        maps = taps[id(spatial[-1])]
        predicted = int(tf.argmax(probabilities[0]))
        score = probabilities[0, predicted]
    grads = tape.gradient(score, maps)
    weights = tf.reduce_mean(grads, axis=(0, 1, 2))  # one weight per channel
    cam = tf.nn.relu(tf.reduce_sum(maps[0] * weights, axis=-1)).numpy()
    cam = cam / cam.max() if cam.max() > 0 else cam
    return cam, predicted, np.asarray(probabilities[0]), spatial[-1].name


@_literal
def grad_cam_png(loaded: LoadedRun, image: np.ndarray, path: Path) -> dict:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    cam, predicted, probabilities, layer = grad_cam(loaded, image)
    h, w = image.shape[:2]
    big = Image.fromarray(np.uint8(cam * 255)).resize((w, h), Image.Resampling.BILINEAR)
    heat = np.asarray(big) / 255.0
    shown = image[..., 0] if image.shape[-1] == 1 else image
    name = loaded.label(predicted)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 2.9))
    axes[0].imshow(shown, cmap="gray", interpolation="nearest")
    axes[0].set_title("image", fontsize=8)
    axes[1].imshow(cam, cmap="jet", interpolation="nearest")
    axes[1].set_title(f"Grad-CAM {cam.shape[0]}×{cam.shape[1]}", fontsize=8)
    axes[2].imshow(shown, cmap="gray", interpolation="nearest")
    axes[2].imshow(heat, cmap="jet", alpha=0.45, interpolation="bilinear")
    axes[2].set_title(_label(f"{name} ({probabilities[predicted]:.2f})"), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(_label(f"where {layer} looked for '{name}'"), fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return {"class": name, "probability": float(probabilities[predicted]), "layer": layer}


def visualize(loaded: LoadedRun, image: np.ndarray, out: Path) -> dict:
    """Write the three pictures into `out`; returns what they show. Each picture is drawn into a
    fresh file and renamed, so a link planted at a picture's name is replaced, never written
    through."""
    from kcnn.runs.records import fresh_file

    out.mkdir(parents=True, exist_ok=True)
    shown = {}
    with fresh_file(out / FILTERS, ".png") as tmp:
        shown["filters"] = filters_png(loaded.model, tmp)
    with fresh_file(out / FEATURE_MAPS, ".png") as tmp:
        shown["feature_maps"] = feature_maps_png(loaded, image, tmp)
    with fresh_file(out / GRAD_CAM, ".png") as tmp:
        shown["grad_cam"] = grad_cam_png(loaded, image, tmp)
    return {"folder": str(out), **shown, "files": [FILTERS, FEATURE_MAPS, GRAD_CAM]}
