"""Test-set evaluation: loss and accuracy from Keras, per-class figures from scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def _loss(model, y_true: np.ndarray, probabilities: np.ndarray) -> float:
    """The compiled loss of these probabilities against integer labels."""
    import keras

    loss_fn = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss
    losses = keras.ops.convert_to_numpy(loss_fn(y_true.astype(np.int64), probabilities))
    return float(np.mean(losses))


def class_balanced(y_true, y_pred, classes: int) -> dict[str, float]:
    """Balanced accuracy (the mean of each class's recall) and macro-F1 (the mean of each
    class's F1), the figures a rare class weighs in as much as a common one, from the confusion
    matrix. As scikit-learn counts them: balanced accuracy over the classes among the true
    labels, macro-F1 over those among the true or predicted labels (a class in neither has no
    F1 to count); an undefined precision or recall counts 0."""
    matrix = confusion_matrix(y_true, y_pred, labels=list(range(classes))).astype(np.float64)
    hits, truths, calls = np.diag(matrix), matrix.sum(axis=1), matrix.sum(axis=0)
    recall = np.divide(hits, truths, out=np.zeros(classes), where=truths > 0)
    precision = np.divide(hits, calls, out=np.zeros(classes), where=calls > 0)
    both = precision + recall
    f1 = np.divide(2 * precision * recall, both, out=np.zeros(classes), where=both > 0)
    seen = (truths > 0) | (calls > 0)
    return {
        "balanced_accuracy": float(recall[truths > 0].mean()),
        "macro_f1": float(f1[seen].mean()),
    }


def tta_probabilities(model, batches, mode: str) -> np.ndarray:
    """The model's probabilities averaged over `mode`'s views of each batch (kcnn.data.tta);
    `batches`: (images, labels) prepared for the model, in the test set's order."""
    import tensorflow as tf

    from kcnn.data import tta

    forward = tf.function(lambda x: model(x, training=False))
    parts = [
        tta.average(lambda v: forward(tf.constant(v)).numpy(), np.asarray(x), mode)
        for x, _ in batches
    ]
    return np.concatenate(parts).astype(np.float32)


def evaluate(
    model, test_ds, y_true, class_names: list[str], tta=None
) -> tuple[dict, np.ndarray, np.ndarray]:
    """Metrics for metrics.json, the confusion matrix (rows: true class, columns: predicted) and
    each test image's class probabilities (float32, images × classes: the per-image record).

    One pass over the test set: the class probabilities, from which the compiled loss, the
    accuracy and the per-class figures all follow (a second pass through `evaluate` would cost
    as much time again, and at 224×224 the memory of another compiled graph).

    `tta` = (mode, the test batches undistributed): every figure is of the probabilities
    averaged over the views (kcnn.data.tta), and `tta` records the accuracy and loss without.

    `y_true`: the labels, or a function giving them once the predictions are made (an image
    folder's test files that failed to decode are left out of the pass, and of its labels)."""
    probabilities = np.asarray(model.predict(test_ds, verbose=0), dtype=np.float32)
    if callable(y_true):
        y_true = y_true()
    without = None
    if tta is not None:
        mode, batches = tta
        without = {
            "mode": mode,
            "test_accuracy_without": float(np.mean(np.argmax(probabilities, -1) == y_true)),
            "test_loss_without": _loss(model, y_true, probabilities),
        }
        probabilities = tta_probabilities(model, batches, mode)
    loss = _loss(model, y_true, probabilities)
    y_pred = np.argmax(probabilities, axis=-1)
    accuracy = float(np.mean(y_pred == y_true))
    labels = list(range(len(class_names)))
    report = classification_report(
        y_true, y_pred, labels=labels, target_names=class_names, output_dict=True, zero_division=0
    )
    per_class = {
        name: {
            "precision": report[name]["precision"],
            "recall": report[name]["recall"],
            "f1": report[name]["f1-score"],
            "support": int(report[name]["support"]),
        }
        for name in class_names
    }
    averages = {
        key.replace(" ", "_"): {
            "precision": report[key]["precision"],
            "recall": report[key]["recall"],
            "f1": report[key]["f1-score"],
        }
        for key in ("macro avg", "weighted avg")
    }
    balanced = class_balanced(y_true, y_pred, len(class_names))
    metrics = {
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "test_balanced_accuracy": balanced["balanced_accuracy"],
        "test_macro_f1": balanced["macro_f1"],
        "per_class": per_class,
        **averages,
        **({"tta": without} if without is not None else {}),
    }
    return metrics, confusion_matrix(y_true, y_pred, labels=labels), probabilities
