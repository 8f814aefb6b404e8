"""Facts of a built Keras model that every command records: parameter counts and the summary."""

from __future__ import annotations

# summary.txt's width: Keras's table with every column whole (Param # included), whatever the
# terminal the run was started from, or none at all (CI, a pipe).
SUMMARY_WIDTH = 110


def count_params(model) -> dict[str, int]:
    """Total, trainable and non-trainable parameters (Keras counts BatchNorm's moving statistics
    as non-trainable weights)."""
    import numpy as np

    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(model.count_params())
    return {"total": total, "trainable": trainable, "non_trainable": total - trainable}


def model_summary(model) -> str:
    """Keras's layer table as text, for summary.txt, always SUMMARY_WIDTH columns wide.

    Keras draws the table with a rich Console that takes its width from the terminal (80 columns
    without one) and squeezes the table into it, cutting the Param # column; `line_length` alone
    does not stop that. So the Console Keras makes here is given the width, and a height (rich
    asks the terminal for its size unless given both).
    """
    from unittest import mock  # asyncio and more: only once a model is described

    import rich.console

    class FixedWidth(rich.console.Console):
        def __init__(self, *args, **kwargs):
            kwargs.update(width=SUMMARY_WIDTH, height=25)
            super().__init__(*args, **kwargs)

    lines: list[str] = []
    with mock.patch.object(rich.console, "Console", FixedWidth):
        model.summary(print_fn=lambda line, *a, **k: lines.append(line), line_length=SUMMARY_WIDTH)
    return "\n".join(lines) + "\n"
