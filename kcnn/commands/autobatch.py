"""`--batch-size auto`, settled once before a run (or a seed group) trains: the largest batch that
fits the device (`kcnn.engine.budget.find_batch_size`), tried on the run's own model, input and
recipe. The config then holds that number, which the run records as its batch size (a group's
seeds all train with it), and `batch_size_search` says how it was found. A note on stderr says
what was found and what bound it.
"""

from __future__ import annotations

import dataclasses

from kcnn import progress
from kcnn.engine import budget, distribute, recipes
from kcnn.engine.config import RunConfig
from kcnn.engine.trainer import default_input_shape, seed_everything


def resolve(config: RunConfig) -> None:
    """Replace `auto` in `config.batch_size` by the batch found (nothing when it is a number)."""
    if config.batch_size != budget.AUTO:
        return
    import keras

    from kcnn.data.prepared import prepare_data
    from kcnn.models import forms

    prepared = prepare_data(config, default_input_shape(config.arch, config.image_size))
    dist = distribute.activate(dataclasses.replace(config, batch_size=1))
    api = getattr(config, "api", None) or config.apis[0]
    dense = config.recipe_augmentation().mixes or config.teacher is not None

    def make():
        with dist.scope():
            return forms.build(config.arch, api, prepared.input_shape, prepared.classes)

    def compile_model(model) -> None:
        with dist.scope():
            model.compile(
                optimizer=recipes.make_optimizer(
                    config.optimizer, config.lr, config.weight_decay, config.momentum,
                    config.nesterov, ema=config.ema,
                ),
                loss=recipes.make_loss(config.label_smoothing, dense),
                metrics=recipes.make_metrics(dense),
                jit_compile=bool(config.jit_compile),
            )  # fmt: skip

    seed_everything(config.seed)
    found = budget.find_batch_size(
        make, prepared.input_shape, prepared.classes, len(prepared.parts.y_train), compile_model
    )
    keras.backend.clear_session(free_memory=True)  # the trial models' memory, before the run's
    config.batch_size = found["batch_size"]
    config.batch_size_search = found
    progress.note(
        f"--batch-size auto: {found['batch_size']} on {found['device']} (bound: {found['bound']})"
    )
