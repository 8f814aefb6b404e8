"""Live tracking of a run while it trains: TensorBoard event files in RUN/tensorboard/.

Open them with `tensorboard --logdir runs/` (every run's curves side by side) or
`tensorboard --logdir RUN/tensorboard` (one run).
"""

from __future__ import annotations

from pathlib import Path

TENSORBOARD = "tensorboard"


def tensorboard_callback(run_dir: str | Path, histograms: bool = False):
    """A Keras TensorBoard callback logging into `run_dir/tensorboard`: scalars (loss, accuracy,
    learning rate) once per epoch and the model's graph; weight histograms every epoch when
    `histograms` is on (slower, bigger files)."""
    import importlib.util

    import keras

    from kcnn.errors import KcnnError

    if importlib.util.find_spec("tensorboard") is None:  # Keras would fail only after epoch 1
        raise KcnnError("--tensorboard needs the tensorboard package: pip install tensorboard")
    return keras.callbacks.TensorBoard(
        log_dir=str(Path(run_dir) / TENSORBOARD),
        histogram_freq=1 if histograms else 0,
        write_graph=True,
        update_freq="epoch",
    )
