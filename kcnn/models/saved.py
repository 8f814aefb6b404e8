"""Loading a model kcnn saved (model.keras, checkpoint.keras): one place that registers every
custom object kcnn writes into them, and loads in Keras safe mode, so that a saved model can never
run arbitrary Python code through a lambda."""

from __future__ import annotations

from pathlib import Path

from kcnn.errors import KcnnError


def register_custom_objects() -> None:
    """Make kcnn's own layers, models and losses known to Keras's deserialiser."""
    import kcnn.models.blocks  # noqa: F401  Block (and the padding layer it uses)
    import kcnn.models.forms  # noqa: F401  DescribedCNN, the subclassed form
    from kcnn.engine.recipes import smoothed_loss_class

    smoothed_loss_class()  # the label-smoothed loss a compiled model may name


def load(path: Path, fix: str):
    """The model saved at `path`; a missing, damaged or unsafe file is a KcnnError that names it
    and ends with `fix` (what the user can do)."""
    import keras

    register_custom_objects()
    if not path.is_file():
        raise KcnnError(f"{path.parent} has no {path.name}; {fix}")
    try:
        return keras.saving.load_model(path, safe_mode=True)
    except Exception as e:  # a zip that is not one, a config Keras cannot rebuild, a lambda, ...
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise KcnnError(
            f"cannot load {path}: it is damaged or unsafe ({first[:120]}); {fix}"
        ) from None
