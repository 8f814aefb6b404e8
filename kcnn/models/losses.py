"""Losses and metrics a compiled kcnn model may name, registered with Keras so that a saved model
loads.

The recipe (kcnn.engine.recipes) chooses the loss; the classes live here, with the models, because
loading a model file (kcnn.models.saved) must know them. This module imports Keras, so kcnn imports
it only where a model is compiled or loaded (`kcnn --help` stays free of Keras);
`keras.models.load_model` with safe_mode finds each class by its registered name ('kcnn>...') once
this module is imported in the loading process.
"""

from __future__ import annotations

import keras

ops = keras.ops


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


# Training targets are dense when labels are mixed (MixUp, CutMix: mixed one-hot rows) or a
# teacher's probabilities follow them (distillation: rows of 2·K, the true labels' K first);
# validation and test labels stay integers. The two classes below take either, deciding on the
# static shape of `y_true`, so one compiled model trains on the first and evaluates on the second.


def _split(y_true, y_pred):
    """(the true labels as rows of K, the teacher's probabilities or None)."""
    classes = y_pred.shape[-1]
    if len(y_true.shape) == 1 or y_true.shape[-1] == 1:
        labels = ops.cast(ops.reshape(y_true, (-1,)), "int32")
        return ops.one_hot(labels, classes, dtype=y_pred.dtype), None
    y_true = ops.cast(y_true, y_pred.dtype)
    if y_true.shape[-1] == 2 * classes:
        return y_true[:, :classes], y_true[:, classes:]
    return y_true, None


@keras.saving.register_keras_serializable(package="kcnn")
class TargetCrossentropy(keras.losses.Loss):
    """Cross-entropy against integer labels or dense rows (label-smoothed when asked), and
    with a teacher's probabilities the distillation term of Hinton et al. (2015):
    (1 − w)·CE(y, p) + w·T²·KL(q_T ‖ p_T), where p_T and q_T are the student's and the
    teacher's probabilities softened by the temperature T (softmax(log p / T): exact for a
    softmax output, whose logits are log p up to a constant)."""

    def __init__(
        self,
        label_smoothing=0.0,
        teacher_weight=0.0,
        temperature=1.0,
        name="target_crossentropy",
        **kwargs,
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.teacher_weight = teacher_weight
        self.temperature = temperature

    def call(self, y_true, y_pred):
        hard, soft = _split(y_true, y_pred)
        ce = keras.losses.categorical_crossentropy(
            hard, y_pred, label_smoothing=self.label_smoothing
        )
        if soft is None or not self.teacher_weight:
            return ce
        t, eps = self.temperature, keras.backend.epsilon()
        student = ops.log_softmax(ops.log(ops.clip(y_pred, eps, 1.0)) / t, axis=-1)
        teacher = ops.log_softmax(ops.log(ops.clip(soft, eps, 1.0)) / t, axis=-1)
        kl = ops.sum(ops.exp(teacher) * (teacher - student), axis=-1)
        w = self.teacher_weight
        return (1.0 - w) * ce + w * t * t * kl

    def get_config(self):
        return {
            **super().get_config(),
            "label_smoothing": self.label_smoothing,
            "teacher_weight": self.teacher_weight,
            "temperature": self.temperature,
        }


def _target_accuracy(y_true, y_pred):
    hard, _ = _split(y_true, y_pred)
    return ops.cast(ops.argmax(hard, axis=-1) == ops.argmax(y_pred, axis=-1), "float32")


@keras.saving.register_keras_serializable(package="kcnn")
class TargetAccuracy(keras.metrics.MeanMetricWrapper):
    """Accuracy against integer labels, or against the largest entry of a dense row: for a
    mixed row, the label of the larger weight (as timm counts a mixed batch)."""

    def __init__(self, name="accuracy", dtype=None):
        super().__init__(_target_accuracy, name=name, dtype=dtype)

    def get_config(self):
        return {"name": self.name, "dtype": self.dtype}


def smoothed_loss_class():
    """The registered label-smoothing loss class."""
    return SmoothedSparseCrossentropy


def target_classes():
    """The registered loss and accuracy for targets that may be dense:
    `(TargetCrossentropy, TargetAccuracy)`."""
    return TargetCrossentropy, TargetAccuracy
