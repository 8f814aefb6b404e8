"""Losses a compiled kcnn model may name, registered with Keras so that a saved model loads.

The recipe (kcnn.engine.recipes) chooses the loss; the class lives here, with the models, because
loading a model file (kcnn.models.saved) must know it.
"""

from __future__ import annotations

_SMOOTHED = None


def smoothed_loss_class():
    """The registered loss class (created once, on first use, so importing kcnn needs no Keras).

    `keras.models.load_model` with safe_mode finds it by its registered name
    'kcnn>SmoothedSparseCrossentropy' once this function has run in the loading process.
    """
    global _SMOOTHED
    if _SMOOTHED is not None:
        return _SMOOTHED
    import keras

    @keras.saving.register_keras_serializable(package="kcnn")
    class SmoothedSparseCrossentropy(keras.losses.Loss):
        """Categorical cross-entropy with label smoothing, for integer labels."""

        def __init__(
            self,
            label_smoothing=0.1,
            from_logits=False,
            name="smoothed_sparse_crossentropy",
            **kwargs,
        ):
            super().__init__(name=name, **kwargs)
            self.label_smoothing = label_smoothing
            self.from_logits = from_logits

        def call(self, y_true, y_pred):
            ops = keras.ops
            labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
            one_hot = ops.one_hot(labels, ops.shape(y_pred)[-1], dtype=y_pred.dtype)
            return keras.losses.categorical_crossentropy(
                one_hot, y_pred, from_logits=self.from_logits, label_smoothing=self.label_smoothing
            )

        def get_config(self):
            return {
                **super().get_config(),
                "label_smoothing": self.label_smoothing,
                "from_logits": self.from_logits,
            }

    _SMOOTHED = SmoothedSparseCrossentropy
    return _SMOOTHED
