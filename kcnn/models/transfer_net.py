"""A transfer network: a frozen ImageNet backbone from `keras.applications` with a small head.

Where the backbone's weights come from (the Keras cache, a download, a local file, or none),
loading them with every layer accounted for, the heads (`seed`: seed 003's Flatten → Dense 128 →
Dense 64 → softmax; `gap`: the Keras guide's global average pooling → dropout → softmax), the one
network seen three ways (whole, frozen extractor, head on features), unfreezing for fine-tuning,
and the frozen backbone's features computed once (Chollet, "Transfer learning & fine-tuning",
keras.io/guides/transfer_learning). `kcnn.commands.transfer` trains it.
"""

from __future__ import annotations

import hashlib
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kcnn.errors import KcnnError, download_failure
from kcnn.models import backbones

# --- weights: where they come from ------------------------------------------------------------


@dataclass
class WeightsSource:
    kind: str  # imagenet, file or none
    path: str | None  # the file loaded (None for random initialisation)
    source: str  # one readable phrase for metrics.json and the terminal
    verified: bool | None = (
        None  # the file's MD5 matches Keras's published hash (None: no hash known)
    )

    def record(self) -> dict[str, Any]:
        return {
            "weights_kind": self.kind,
            "weights_file": self.path,
            "weights_source": self.source,
            "weights_md5_verified": self.verified,
        }


def _md5(path: Path) -> str:
    digest = hashlib.md5()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def resolve_weights(backbone: backbones.Backbone, weights: str, image_size: int) -> WeightsSource:
    """Find the file a backbone's weights come from: the Keras cache, a download, or the user's.

    A cached file is used as it is (Keras itself would re-download one whose hash differs, which
    fails offline); whether it matches Keras's published hash is recorded, not enforced.
    """
    if weights == "none":
        return WeightsSource("none", None, "none (random initialisation)")
    if weights != "imagenet":
        return WeightsSource("file", weights, f"file {weights}")
    from kcnn.data.datasets import keras_home

    cached = backbones.cache_path(keras_home(), backbone, image_size)
    if cached.is_file():
        verified = _md5(cached) == backbone.weights_md5 if backbone.weights_md5 else None
        return WeightsSource("imagenet", str(cached), f"imagenet, Keras cache {cached}", verified)
    import keras

    try:
        path = keras.utils.get_file(
            backbone.weights_file(image_size),
            backbone.weights_origin(image_size),
            cache_subdir="models",
            cache_dir=str(keras_home()),
            file_hash=backbone.weights_md5,
        )
    except Exception as e:  # no network, DNS failure, HTTP error, hash mismatch after download
        raise KcnnError(
            f"ImageNet weights for {backbone.name} are not in the Keras cache and could not be "
            f"downloaded: {download_failure(e)}; put {backbone.weights_file(image_size)} into "
            f"{cached.parent}, or pass --weights PATH with a local weights file, "
            f"or --weights none for random initialisation"
        ) from None
    return WeightsSource(
        "imagenet",
        str(path),
        f"imagenet, downloaded to {path}",
        True if backbone.weights_md5 else None,
    )


def load_weights(base, backbone: backbones.Backbone, weights: WeightsSource) -> None:
    """Load a weights file into a freshly built backbone; a file that does not fit is an error."""
    import warnings

    if weights.path is None:
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            base.load_weights(weights.path)
        # Keras only warns when it skips parts of a file and leaves them randomly initialised:
        # a partly loaded backbone is as wrong as an unloaded one.
        skipped = [str(w.message) for w in caught if "freshly-initialized" in str(w.message)]
        if skipped:
            raise ValueError(skipped[0])
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        fix = (
            "delete it so that it is downloaded again"
            if weights.kind == "imagenet"
            else f"pass weights saved from a {backbone.name} built without its top (include_top=False)"
        )
        raise KcnnError(
            f"weights file {weights.path} does not fit {backbone.name} ({reason[:160]}); {fix}"
        ) from None


# --- the model: backbone + head ----------------------------------------------------------------


def head_layers(head: str, classes: int, dropout: float):
    """The head's layers: a parameter-free first layer that turns the backbone's feature map into a
    vector (cached together with the backbone), then the trainable rest.

    `seed` is seed 003's head: Flatten → Dense 128 relu → Dense 64 relu → softmax.
    `gap` is the Keras guide's: global average pooling → dropout → softmax.
    """
    import keras

    if head == "seed":
        return keras.layers.Flatten(name="flatten"), [
            keras.layers.Dense(128, activation="relu", name="dense_128"),
            keras.layers.Dense(64, activation="relu", name="dense_64"),
            keras.layers.Dense(classes, activation="softmax", name="predictions", dtype="float32"),
        ]
    return keras.layers.GlobalAveragePooling2D(name="avg_pool"), [
        keras.layers.Dropout(dropout, name="dropout"),
        keras.layers.Dense(classes, activation="softmax", name="predictions", dtype="float32"),
    ]


@dataclass
class TransferModel:
    """One network seen three ways. `model` is the whole thing (what is saved and evaluated);
    `extractor` is the frozen part (backbone + pooling) whose outputs are cached; `head` holds the
    trainable layers on their own, sharing their weights with `model`."""

    model: Any
    base: Any
    extractor: Any
    head: Any


def build(
    backbone: backbones.Backbone,
    input_shape,
    classes: int,
    head: str,
    dropout: float,
    weights: WeightsSource,
) -> TransferModel:
    import keras

    base = backbone.build(input_shape)
    load_weights(base, backbone, weights)
    base.trainable = False
    pool, trainable = head_layers(head, classes, dropout)

    def top(x):
        for layer in trainable:
            x = layer(x)
        return x

    inputs = keras.Input(shape=tuple(input_shape), name="image")
    # training=False keeps BatchNorm in inference mode, also after layers are unfrozen to fine-tune.
    features = pool(base(inputs, training=False))
    model = keras.Model(inputs, top(features), name=f"{backbone.name}_{head}_head")
    extractor = keras.Model(inputs, features, name=f"{backbone.name}_features")
    feature_input = keras.Input(shape=tuple(features.shape[1:]), name="features")
    head_model = keras.Model(feature_input, top(feature_input), name=f"{head}_head")
    return TransferModel(model, base, extractor, head_model)


def unfreeze_top(base, n: int) -> list[str]:
    """Make the top `n` backbone layers trainable, BatchNormalization excepted (its statistics stay
    the ImageNet ones, as the Keras guide advises). Returns the names of the layers unfrozen."""
    import keras

    layers = [layer for layer in base.layers if not isinstance(layer, keras.layers.InputLayer)]
    base.trainable = True
    for layer in layers:
        layer.trainable = False
    unfrozen = []
    for layer in layers[len(layers) - n :] if n else []:
        if not isinstance(layer, keras.layers.BatchNormalization):
            layer.trainable = True
            if layer.weights:
                unfrozen.append(layer.name)
    return unfrozen


def backbone_layer_count(base) -> int:
    import keras

    return sum(not isinstance(layer, keras.layers.InputLayer) for layer in base.layers)


# --- training -----------------------------------------------------------------------------------

# A feature pass's memory is the frozen backbone's activations at full input size (VGG16's first
# block: 12.8 MB per 224×224 image and layer), while its speed per image hardly depends on the
# batch (measured idle: VGG16 at 224×224, 9.4 images/s at batches of 8 and 32 with peaks of 1.1
# and 2.0 GB; at 32×32, 310-400 images/s at batches of 32-256). So a batch holds a fixed number
# of pixels: 8 images of 224×224, 256 (the most) of 32×32.
FEATURE_BATCH_PIXELS = 8 * 224 * 224
FEATURE_BATCH_MAX = 256


def feature_batch(input_shape) -> int:
    """Images per pass of the frozen backbone when its features are cached."""
    h, w = input_shape[:2]
    return max(1, min(FEATURE_BATCH_MAX, FEATURE_BATCH_PIXELS // (h * w)))


_FORWARD: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def _forward(extractor, input_shape):
    """The extractor as one traced function for every batch size (the last batch is smaller),
    traced once for all the passes over the splits (a trace costs a second or two)."""
    import tensorflow as tf

    key = tuple(input_shape)
    found = _FORWARD.get(extractor)
    if found is None or found[0] != key:
        function = tf.function(
            lambda images: extractor(images, training=False),
            input_signature=[tf.TensorSpec((None, *input_shape), tf.float32)],
        )
        found = _FORWARD[extractor] = (key, function)
    return found[1]


def extract_features(
    extractor,
    x,
    input_shape,
    preprocess,
    directory: Path | None = None,
    what: str = "backbone features",
    quiet: bool = False,
):
    """The frozen backbone's features of every image, written batch by batch into one array
    allocated once — or, given a `directory`, into a FeatureStore file there — so memory is one
    small batch of activations (at 224×224 a batch of 128 through VGG16's first block alone is
    1.6 GB) and the features, never a list of outputs to join. The head then reads them in
    place (`array_batches`), so they are never copied whole. The pass shows its progress as
    `what` (VGG16 at 224×224 takes minutes for a few thousand images). An image folder's files
    that fail to decode are left out: the features are then of the images it gave
    (`kcnn.data.files.kept_labels` gives their labels)."""
    import numpy as np

    from kcnn.data.feature_store import FeatureStore
    from kcnn.data.pipeline import make_dataset
    from kcnn.progress import steps

    shape = (len(x), *extractor.output.shape[1:])
    if directory is None:
        features = np.empty(shape, dtype=np.float32)
        write = features.__setitem__
    else:
        features = FeatureStore(shape, directory)
        write = lambda rows, out: features.write(rows.start, out)  # noqa: E731
    forward = _forward(extractor, input_shape)
    labels = np.zeros(len(x), dtype=np.int64)
    done = 0
    batches = make_dataset(
        x, labels, input_shape, feature_batch(input_shape), preprocess=preprocess
    )
    with steps(what, len(x), "images", quiet=quiet) as shown:
        for images, _ in batches:
            out = forward(images).numpy()
            write(slice(done, done + len(out)), out)
            done += len(out)
            shown.advance(len(out))
    if done < len(x):  # image files that failed to decode were left out (kcnn.data.files)
        features = features[:done] if directory is None else features.truncate(done)
    return features
