"""Facts of a built Keras model that every command records: parameter counts and the summary."""

from __future__ import annotations


def count_params(model) -> dict[str, int]:
    """Total, trainable and non-trainable parameters (Keras counts BatchNorm's moving statistics
    as non-trainable weights)."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def model_summary(model) -> str:
    """Keras's layer table as text, for summary.txt."""
    lines: list[str] = []
    model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=110)
    return "\n".join(lines) + "\n"
