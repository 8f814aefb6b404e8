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
import textwrap
from pathlib import Path

import numpy as np

from kcnn.use.predict import LoadedRun

MAX_MAPS = 8  # feature-map pictures per image (evenly chosen among the conv stages)
MAX_CHANNELS = 16  # channels shown per feature map
MAX_FILTERS = 64

FILTERS, FEATURE_MAPS, GRAD_CAM = "filters.png", "feature_maps.png", "grad_cam.png"
SHOWN = "visualize.json"  # beside the pictures: which image they show, what the model saw


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


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _channels_row(fig, cell, maps: np.ndarray, title: str) -> None:
    """A map of one pixel (LeNet-5's C5, a backbone's last block at a small input) has one value
    per channel: drawn as one strip of all its channels, not as squares of one colour each."""
    ax = fig.add_subplot(cell)
    values = maps.reshape(1, -1)
    ax.imshow(_unit(values), cmap="viridis", aspect="auto", interpolation="nearest")
    ax.set_yticks([])
    ax.tick_params(axis="x", labelsize=6, length=2)
    ax.set_xlabel(f"channel (one value each; {values.shape[1]} channels)", fontsize=6, labelpad=1)
    ax.set_title(_label(title), fontsize=6, loc="left")


def _maps_row(fig, cells, maps: np.ndarray, title: str) -> None:
    """The first MAX_CHANNELS channels of a map, one small picture each."""
    for c in range(min(maps.shape[-1], MAX_CHANNELS)):
        ax = fig.add_subplot(cells[c])
        ax.imshow(_unit(maps[..., c]), cmap="viridis", interpolation="nearest")
        ax.axis("off")
        if c == 0:
            ax.set_title(_label(title), fontsize=6, loc="left")


@_literal
def feature_maps_figure(loaded: LoadedRun, image: np.ndarray, shows: str = ""):
    """Up to MAX_CHANNELS channels of the maps after each chosen conv stage, one row each; returns
    the figure (the caller's to save and close) and the stages' names."""
    chosen = _chosen(conv_layers(loaded.model))
    taps, _ = run(loaded.model, loaded.prepare(image[None]), chosen)
    plt = _pyplot()
    rows = len(chosen)
    fig = plt.figure(figsize=(0.8 * MAX_CHANNELS, 1.0 * rows + 0.6), layout="constrained")
    grid = fig.add_gridspec(rows, MAX_CHANNELS)
    for r, layer in enumerate(chosen):
        maps = np.asarray(taps[id(layer)])[0]
        title = f"{layer.name} ({'×'.join(map(str, maps.shape))})"
        if maps.shape[0] * maps.shape[1] == 1:
            _channels_row(fig, grid[r, :], maps, title)
        else:
            _maps_row(fig, [grid[r, c] for c in range(MAX_CHANNELS)], maps, title)
    heading = "feature maps, first channels of each conv stage"
    fig.suptitle(_label(f"{heading}: {shows}" if shows else heading), fontsize=9)
    return fig, [la.name for la in chosen]


def feature_maps_png(loaded: LoadedRun, image: np.ndarray, path: Path, shows: str = "") -> list:
    fig, names = feature_maps_figure(loaded, image, shows)
    _save(fig, path)
    return names


@_literal  # tick labels are made while saving
def _save(fig, path: Path) -> None:
    try:
        fig.savefig(path, dpi=90, format="png")
    finally:
        _pyplot().close(fig)


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


COARSE = 4  # a Grad-CAM map with a side of fewer cells than this cannot say where a model looked


def coarse_note(cam: np.ndarray, image: np.ndarray) -> str:
    """A sentence for a Grad-CAM map too coarse to mean much (VGG16 at 32×32 gives 2×2), or ""."""
    h, w = cam.shape[:2]
    if min(h, w) >= COARSE:
        return ""
    return (
        f"Grad-CAM map only {h}×{w}: each cell covers {image.shape[0] // h}×{image.shape[1] // w} "
        "of the image's pixels, too coarse to show where the network looked "
        "(a larger input image gives a finer map)."
    )


@_literal
def grad_cam_figure(loaded: LoadedRun, image: np.ndarray, shows: str = ""):
    """The image, its Grad-CAM map and the map over the image; returns the figure (the caller's
    to save and close) and what it shows."""
    from PIL import Image

    plt = _pyplot()
    cam, predicted, probabilities, layer = grad_cam(loaded, image)
    h, w = image.shape[:2]
    big = Image.fromarray(np.uint8(cam * 255)).resize((w, h), Image.Resampling.BILINEAR)
    heat = np.asarray(big) / 255.0
    shown = image[..., 0] if image.shape[-1] == 1 else image
    name = loaded.label(predicted)
    fig, axes = plt.subplots(1, 3, figsize=(7.5, 3.1), layout="constrained")
    axes[0].imshow(shown, cmap="gray", interpolation="nearest")
    axes[0].set_title(_label(shows or "image"), fontsize=8, wrap=True)
    axes[1].imshow(cam, cmap="jet", interpolation="nearest")
    axes[1].set_title(f"Grad-CAM {cam.shape[0]}×{cam.shape[1]}", fontsize=8)
    axes[2].imshow(shown, cmap="gray", interpolation="nearest")
    axes[2].imshow(heat, cmap="jet", alpha=0.45, interpolation="bilinear")
    axes[2].set_title(_label(f"{name} ({probabilities[predicted]:.2f})"), fontsize=8)
    for ax in axes:
        ax.axis("off")
    fig.suptitle(_label(f"where {layer} looked for '{name}'"), fontsize=9)
    note = coarse_note(cam, image)
    if note:
        fig.supxlabel(textwrap.fill(note, 90), fontsize=8, color="#a03000")
    shown_record = {
        "class": name,
        "probability": float(probabilities[predicted]),
        "layer": layer,
        "map": list(cam.shape[:2]),
    }
    if note:
        shown_record["note"] = note
    return fig, shown_record


def grad_cam_png(loaded: LoadedRun, image: np.ndarray, path: Path, shows: str = "") -> dict:
    fig, shown = grad_cam_figure(loaded, image, shows)
    _save(fig, path)
    return shown


def visualize(loaded: LoadedRun, image: np.ndarray, out: Path, shows: str = "") -> dict:
    """Write the three pictures into `out`, and what they show (`shows`: which image, in words)
    into visualize.json beside them; returns that record. Each file is written fresh and
    renamed, so a link planted at a picture's name is replaced, never written through."""
    from kcnn.runs import folders
    from kcnn.runs.records import fresh_file, write_json

    check_drawable(loaded)
    made = folders.make(out)  # undone below if nothing could be drawn: a refusal leaves no folder
    try:
        shown: dict = {"image": shows} if shows else {}
        with fresh_file(out / FILTERS, ".png") as tmp:
            shown["filters"] = filters_png(loaded.model, tmp)
        with fresh_file(out / FEATURE_MAPS, ".png") as tmp:
            shown["feature_maps"] = feature_maps_png(loaded, image, tmp, shows)
        with fresh_file(out / GRAD_CAM, ".png") as tmp:
            shown["grad_cam"] = grad_cam_png(loaded, image, tmp, shows)
    except BaseException:
        folders.unmake(made)
        raise
    record = {"folder": str(out), **shown, "files": [FILTERS, FEATURE_MAPS, GRAD_CAM]}
    write_json(out / SHOWN, {k: v for k, v in record.items() if k != "folder"})
    return record


def check_drawable(loaded: LoadedRun) -> None:
    """Refuse, before anything is written, a model with nothing to draw: filters, feature maps
    and Grad-CAM all look at convolutions."""
    from kcnn.errors import KcnnError

    convs = conv_layers(loaded.model)
    if not convs or not _leaf_convs(convs[0]):
        raise KcnnError(
            f"the model of {loaded.info.folder} has no convolution: visualize draws conv filters, "
            "feature maps and Grad-CAM, and there is none to draw"
        )
