"""Test-set evaluation: loss and accuracy from Keras, per-class figures from scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import classification_report, confusion_matrix


def evaluate(model, test_ds, y_true, class_names: list[str]) -> tuple[dict, np.ndarray]:
    """Metrics for metrics.json and the confusion matrix (rows: true class, columns: predicted).
    `y_true`: the labels, or a function giving them once the predictions are made (an image
    folder's test files that failed to decode are left out of the pass, and of its labels).

    One pass over the test set: the class probabilities, from which the compiled loss, the
    accuracy and the per-class figures all follow (a second pass through `evaluate` would cost
    as much time again, and at 224×224 the memory of another compiled graph)."""
    import keras

    probabilities = np.asarray(model.predict(test_ds, verbose=0), dtype=np.float32)
    if callable(y_true):
        y_true = y_true()
    loss_fn = keras.losses.get(model.loss) if isinstance(model.loss, str) else model.loss
    losses = keras.ops.convert_to_numpy(loss_fn(y_true.astype(np.int64), probabilities))
    loss = float(np.mean(losses))
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
    metrics = {
        "test_loss": float(loss),
        "test_accuracy": float(accuracy),
        "per_class": per_class,
        **averages,
    }
    return metrics, confusion_matrix(y_true, y_pred, labels=labels)
