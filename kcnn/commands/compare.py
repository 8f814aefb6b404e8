"""`kcnn compare-apis` as a library call: one CNN as Sequential, Functional and subclassed models,
proven to be the same network, then trained side by side.

Seed 003 builds its CNN three ways, trains each, and can only say the results look "similar".
Here the three forms are first *proven* equal — equal parameter counts, equal weight shapes layer
by layer, and outputs that agree on a real batch once one form's weights are copied into the
others — and only then trained, on identical data order, so that what remains different (build
time, speed, and with `same_init=False` the spread from initialisation) is what the report shows.

    from kcnn.commands.compare import compare_apis
    from kcnn.engine.config import CompareConfig
    result = compare_apis(CompareConfig(dataset="shapes", epochs=3))
    result.proof.equivalent, result.rows, result.folder

`prove_equivalent` works on any dict of Keras models, not only the three forms kcnn builds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kcnn import defaults
from kcnn.data.prepared import prepare_data
from kcnn.engine.config import CompareConfig
from kcnn.engine.trainer import Trainer, count_params, default_input_shape, seed_everything
from kcnn.errors import KcnnError, ModelMismatchError
from kcnn.runs import folders
from kcnn.runs.browse import RunInfo
from kcnn.runs.folders import COMPARISON_JSON, PROOF_JSON
from kcnn.runs.recorder import RunRecords
from kcnn.runs.records import Damaged, write_json
from kcnn.runs.run import RUN_FACTS, RunFolder, read_resume

# Layer-by-layer tables longer than this go to comparison.md only, not to the terminal.
MAX_LAYER_ROWS_SHOWN = 40


# --- the proof ---------------------------------------------------------------------------------


def _shape_text(shapes: list[tuple[int, ...]] | None) -> str:
    if shapes is None:
        return "missing"
    return ", ".join("×".join(str(d) for d in shape) or "scalar" for shape in shapes)


@dataclass
class Proof:
    """What `prove_equivalent` found. `forms` rows and `layers` rows are ready to print."""

    reference: str
    forms: list[
        dict[str, Any]
    ]  # per model: params, weighted layers, shapes verdict, output difference
    layers: list[dict[str, Any]]  # per weighted layer: its weight shapes in every model
    differences: list[
        str
    ]  # where the models differ, one plain sentence each; empty when equivalent
    tolerance: float
    batch_size: int

    @property
    def equivalent(self) -> bool:
        return not self.differences

    @property
    def names(self) -> list[str]:
        return [row["form"] for row in self.forms]

    def message(self) -> str:
        """One line: the verdict, and where the models differ."""
        if self.equivalent:
            return (
                f"equivalent: equal parameters, equal weight shapes in all {len(self.layers)} weighted layers, "
                f"outputs within {self.tolerance:g} on a batch of {self.batch_size} images"
            )
        return "the models are not the same network: " + "; ".join(self.differences)

    def check(self) -> Proof:
        if not self.equivalent:
            raise ModelMismatchError(self.message())
        return self

    def as_dict(self) -> dict[str, Any]:
        return {
            "equivalent": self.equivalent,
            "reference": self.reference,
            "tolerance": self.tolerance,
            "batch_size": self.batch_size,
            "forms": self.forms,
            "layers": self.layers,
            "differences": self.differences,
            "verdict": self.message(),
        }

    def form_rows(self) -> list[dict[str, Any]]:
        """The per-model table with display values (the JSON keeps the raw numbers)."""
        rows = []
        for row in self.forms:
            diff = row["max_abs_output_diff"]
            rows.append(
                {
                    "form": row["form"],
                    "parameters": row["params"],
                    "trainable": row["trainable_params"],
                    "weighted layers": row["weighted_layers"],
                    "weight shapes": row["weight_shapes"],
                    "max abs output difference": "(reference)"
                    if row["form"] == self.reference
                    else ("-" if diff is None else f"{diff:.2e}"),
                }
            )
        return rows

    def layer_rows(self) -> list[dict[str, Any]]:
        return [
            {
                "layer": row["layer"],
                **{name: _shape_text(row["shapes"][name]) for name in self.names},
                "same": "yes" if row["equal"] else "NO",
            }
            for row in self.layers
        ]

    def markdown(self) -> str:
        from kcnn.runs.report import markdown_table

        form_rows = self.form_rows()
        layer_rows = self.layer_rows()
        return "\n\n".join(
            [
                "## Proof before training",
                f"The weights of `{self.reference}` were copied into the other forms and one batch of "
                f"{self.batch_size} real images was run through each in inference mode (BatchNorm uses its "
                f"moving statistics).",
                markdown_table(form_rows, list(form_rows[0])),
                "### Weight shapes, layer by layer",
                markdown_table(layer_rows, list(layer_rows[0]))
                if layer_rows
                else "(no layer holds weights)",
                f"**{'Verdict' if self.equivalent else 'MISMATCH'}:** {self.message()}",
            ]
        )

    def text(self) -> str:
        """The proof as plain-text tables for the terminal."""
        form_rows = self.form_rows()
        lines = [_text_table(form_rows)]
        if len(self.layers) <= MAX_LAYER_ROWS_SHOWN:
            lines += ["", _text_table(self.layer_rows())]
        else:
            shown = [r for r in self.layer_rows() if r["same"] != "yes"]
            lines += [
                "",
                f"{len(self.layers)} weighted layers: the full layer-by-layer table is in comparison.md",
            ]
            if shown:
                lines += [_text_table(shown)]
        lines += ["", self.message()]
        return "\n".join(lines)


def _text_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    columns = list(rows[0])

    def cell(value):
        return f"{value:,}" if isinstance(value, int) else str(value)

    widths = {c: max(len(c), *(len(cell(r[c])) for r in rows)) for c in columns}
    numeric = {c for c in columns if all(isinstance(r[c], int) for r in rows)}
    fmt = [(c, widths[c], c in numeric) for c in columns]
    head = "  ".join(c.rjust(w) if num else c.ljust(w) for c, w, num in fmt)
    body = [
        "  ".join(cell(r[c]).rjust(w) if num else cell(r[c]).ljust(w) for c, w, num in fmt)
        for r in rows
    ]
    return "\n".join(line.rstrip() for line in [head, *body])


def prove_equivalent(
    models: dict[str, Any], sample_batch, tolerance: float = defaults.COMPARE_TOLERANCE
) -> Proof:
    """Check that every model in `models` is the same network as the first one.

    Compares parameter counts, the weight shapes of every weighted layer (matched by layer name),
    and — where the structure allows a copy — the largest absolute output difference on
    `sample_batch` after the first model's weights are copied into each other model. The models'
    own weights are restored afterwards, so the check changes nothing.
    """
    import keras
    import numpy as np

    from kcnn.models import forms

    if len(models) < 2:
        raise KcnnError("prove_equivalent needs at least two models to compare")
    names = list(models)
    reference, ref_model = names[0], models[names[0]]
    shapes = {name: forms.weight_shapes(model) for name, model in models.items()}
    layer_names = list(dict.fromkeys(layer for name in names for layer in shapes[name]))
    layers = []
    for layer in layer_names:
        per_model = {name: shapes[name].get(layer) for name in names}
        equal = all(per_model[name] == per_model[reference] for name in names)
        layers.append({"layer": layer, "shapes": per_model, "equal": equal})

    def output(model):
        return keras.ops.convert_to_numpy(model(sample_batch, training=False)).astype(np.float64)

    ref_out = output(ref_model)
    differences: list[str] = []
    rows = []
    for name in names:
        model = models[name]
        params = count_params(model)
        row = {
            "form": name,
            "params": params["total"],
            "trainable_params": params["trainable"],
            "weighted_layers": len(shapes[name]),
            "weight_shapes": "(reference)",
            "max_abs_output_diff": 0.0 if name == reference else None,
        }
        rows.append(row)
        if name == reference:
            continue
        where = _shape_differences(reference, name, shapes[reference], shapes[name])
        row["weight_shapes"] = "equal" if not where else f"{len(where)} layer(s) differ"
        ref_params = rows[0]["params"]
        if params["total"] != ref_params:
            differences.append(
                f"{name} has {params['total']:,} parameters, {reference} {ref_params:,}"
            )
        differences += where
        if where:
            continue  # weights cannot be copied between different structures
        saved = model.get_weights()
        try:
            forms.copy_weights(ref_model, model)
            out = output(model)
        finally:
            model.set_weights(saved)
        if out.shape != ref_out.shape:
            differences.append(
                f"{name} outputs shape {out.shape[1:]}, {reference} {ref_out.shape[1:]}"
            )
            continue
        diff = float(np.max(np.abs(out - ref_out))) if out.size else 0.0
        row["max_abs_output_diff"] = diff
        if not diff <= tolerance:  # also catches NaN
            differences.append(
                f"with {reference}'s weights, {name}'s outputs differ by up to {diff:.3g} "
                f"(tolerance {tolerance:g}): same weights, different computation"
            )
    return Proof(reference, rows, layers, differences, float(tolerance), int(len(sample_batch)))


def _shape_differences(ref_name: str, name: str, ref: dict, other: dict) -> list[str]:
    """Plain sentences naming each layer whose weights differ between two models."""
    found = []
    only_ref, only_other = [k for k in ref if k not in other], [k for k in other if k not in ref]
    if only_ref:
        found.append(f"layer(s) {', '.join(only_ref)} only in {ref_name}")
    if only_other:
        found.append(f"layer(s) {', '.join(only_other)} only in {name}")
    for layer in ref:
        if layer in other and ref[layer] != other[layer]:
            found.append(
                f"layer {layer}: weights {_shape_text(ref[layer])} in {ref_name} "
                f"but {_shape_text(other[layer])} in {name}"
            )
    return found


# --- the experiment ----------------------------------------------------------------------------


@dataclass
class CompareResult:
    folder: Path
    proof: Proof
    rows: list[dict[str, Any]]
    histories: dict[str, dict[str, list[float]]]
    agreement: dict[str, Any]
    config: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "folder": str(self.folder),
            "config": self.config,
            "proof": self.proof.as_dict(),
            "forms": self.rows,
            "agreement": self.agreement,
        }


def _build_forms(config: CompareConfig, input_shape, classes: int) -> tuple[dict, dict]:
    """Build every form, timing each build.

    With same_init every form is built from the same seed, so even randomness fixed at build time
    (a Dropout layer's seed) matches; the weights are copied from the first form afterwards anyway.
    With independent init each form gets its own seed (seed, seed+1, ...), as three separate
    notebook cells would.
    """
    from kcnn.models import forms

    # A throw-away build first, so TensorFlow's one-time start-up cost is not charged to the first form.
    forms.build(config.arch, config.apis[0], input_shape, classes)
    models, seconds = {}, {}
    for i, api in enumerate(config.apis):
        seed_everything(config.seed if config.same_init else config.seed + i)
        start = time.perf_counter()
        models[api] = forms.build(config.arch, api, input_shape, classes)
        seconds[api] = time.perf_counter() - start
    return models, seconds


def _agreement(
    rows: list[dict[str, Any]], histories: dict[str, dict[str, list[float]]]
) -> dict[str, Any]:
    """How far the forms' results lie apart: test-accuracy spread and the largest curve gap."""
    accuracies = [row["test_accuracy"] for row in rows]
    names = list(histories)
    curves = {}
    for key in histories[names[0]]:
        gaps = [
            abs(a - b)
            for other in names[1:]
            for a, b in zip(histories[names[0]][key], histories[other].get(key, []), strict=False)
        ]
        curves[key] = max(gaps) if gaps else 0.0
    return {
        "test_accuracy_spread": max(accuracies) - min(accuracies),
        "test_loss_spread": max(r["test_loss"] for r in rows) - min(r["test_loss"] for r in rows),
        "max_curve_gap": curves,
    }


def compare_apis(
    config: CompareConfig, on_proof=None, quiet: bool = False, resume: str | Path | None = None
) -> CompareResult:
    """Prove the forms equal, train each on identical data order, and write the comparison folder.

    `on_proof(proof)` is called as soon as the proof is done (before training, and before a
    mismatch is raised), so a caller can show it. A mismatch raises `ModelMismatchError` (exit 1)
    and leaves no comparison folder behind. `quiet` sends Keras's progress to stderr. `resume`:
    the folder of an interrupted comparison (see `resume`), finished in place.
    """
    config.validate()  # before TensorFlow is imported or any data loaded: bad input fails at once
    from kcnn.data.pipeline import make_dataset
    from kcnn.engine import distribute

    dist = distribute.activate(config)  # before TensorFlow starts: devices, cluster, scratch out
    started = time.perf_counter()
    prepared = prepare_data(config, default_input_shape(config.arch, config.image_size))
    input_shape = prepared.input_shape
    with dist.scope():  # the forms' variables belong to the strategy the trainers fit under
        models, build_seconds = _build_forms(config, input_shape, prepared.classes)

    # One real batch, exactly as the model sees it in training: from the test split, through the pipeline.
    parts = prepared.parts
    sample, _ = next(iter(make_dataset(parts.x_test, parts.y_test, input_shape, config.batch_size)))
    proof = prove_equivalent(models, sample, config.tolerance)
    if on_proof is not None:
        on_proof(proof)
    if not proof.equivalent:
        error = ModelMismatchError(proof.message())
        error.proof = proof
        raise error

    reference = config.apis[0]
    if config.same_init:
        from kcnn.models import forms

        for api in config.apis[1:]:
            forms.copy_weights(models[reference], models[api])

    init = "same" if config.same_init else "independent"
    settings = {
        "command": config.command,
        **config.settings_dict(),
        "input_shape": list(input_shape),
        "init": init,
    }
    if resume is None:
        folder = folders.create(config.out, config.name)
        write_json(folder / folders.CONFIG, {**settings, "versions": folders.versions()})
        write_json(folder / PROOF_JSON, proof.as_dict())
        found = {}
    else:
        folder = Path(resume)
        found = _form_folders(folder)

    rows, histories = [], {}
    for i, api in enumerate(config.apis):
        facts = {
            "part_of": config.command,
            "init": init,
            "init_seed": config.seed if config.same_init else config.seed + i,
            "initial_weights_from": reference if config.same_init and api != reference else None,
        }
        form = config.form_config(api).validate()
        metrics, history, run_dir = _train_form(
            form, facts, models[api], build_seconds[api], prepared, folder, found.get(api), quiet
        )
        models[api] = None  # free each form once it is recorded
        m = metrics
        rows.append(
            {
                "form": api,
                "parameters": m["params"]["total"],
                "test_loss": m["test_loss"],
                "test_accuracy": m["test_accuracy"],
                "best_val_accuracy": m["best_val_accuracy"],
                "build_seconds": m["build_seconds"],
                "seconds_per_epoch": m["seconds_per_epoch"],
                "images_per_second": m["train_images_per_second"],
                "max_abs_output_diff": next(
                    r["max_abs_output_diff"] for r in proof.forms if r["form"] == api
                ),
                "run_dir": run_dir.name,
            }
        )
        histories[api] = history

    agreement = _agreement(rows, histories)
    settings["wall_seconds"] = time.perf_counter() - started
    result = CompareResult(folder, proof, rows, histories, agreement, settings)
    from kcnn.runs import report

    _write_report(result, config, prepared.data.name, parts, input_shape, report)
    write_json(folder / COMPARISON_JSON, result.as_dict())
    return result


def _train_form(form, facts, model, build_seconds, prepared, folder: Path, found, quiet):
    """Train one API form in its run folder inside the comparison `folder` (or, resuming,
    finish the form's folder `found`: nothing if it completed, from its checkpoint if it has
    one). Returns its metrics, history and folder."""
    from kcnn.engine import checkpoints

    hint = f"kcnn compare-apis --resume {folder}"
    identity = {"arch": form.arch, "api": form.api}
    state = None
    if found is not None:
        run = RunFolder(found)
        metrics = run.metrics()
        if metrics.get("status") == "completed":
            history = RunInfo.load(found).history()
            return metrics, history, found
        record, state = read_resume(found, ("train",))
        facts = {k: v for k, v in record.items() if k in RUN_FACTS and k not in identity}
    records = RunRecords(
        form.command, form.settings_dict(), identity, facts, folder=found if state else None
    )
    trainer = Trainer(
        form, records, quiet=quiet, out=folder, resume=state, resumable=True, resume_hint=hint
    )
    with trainer.running():
        trainer.use(prepared)
        # Re-seed before each fit: the same shuffle order and the same dropout draws for every form.
        seed_everything(form.seed)
        if state is not None and state.epoch:
            with trainer.scope():  # weights, optimizer and generators as the checkpoint left them
                model = checkpoints.load_model(trainer.run)
            trainer.describe(model)
        else:
            trainer.describe(model)
            trainer.compile(model)
        trainer.records.results["build_seconds"] = build_seconds
        trainer.fit(
            model,
            trainer.training_batches(form.epochs),
            trainer.batches("val"),
            epochs=form.epochs,
        )
        title = f"{form.arch} ({form.api}) on {prepared.data.name}"
        result = trainer.finish(model, title=title)
    return result.metrics, result.history, result.run_dir


def _form_folders(folder: Path) -> dict[str, Path]:
    """The API form each run folder inside an interrupted comparison trained."""
    found = {}
    for sub in RunFolder(folder).subfolders():
        info = RunInfo.load(sub, member=True)
        if info.damage is not None:
            raise KcnnError(f"{sub} cannot be resumed: {info.damage}")
        if info.config and info.config.get("api"):
            found[info.config["api"]] = sub
    return found


def resume(folder: str | Path, quiet: bool = False, on_proof=None) -> CompareResult:
    """Finish an interrupted `kcnn compare-apis` in its folder: each form that completed is kept,
    an interrupted one continues from its checkpoint, one never started is trained; every number
    is what an uninterrupted comparison would have given."""
    config = resume_config(folder)
    return compare_apis(config, on_proof=on_proof, quiet=quiet, resume=Path(folder).expanduser())


def resume_config(folder: str | Path) -> CompareConfig:
    """The settings of an interrupted comparison, checked as a new run's are."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise KcnnError(f"no comparison folder {folder}; pass the folder kcnn compare-apis made")
    run = RunFolder(folder)
    try:
        record = run.config()
    except FileNotFoundError:
        raise KcnnError(f"{folder} has no config.json: it is not a kcnn comparison") from None
    except Damaged as e:
        raise KcnnError(f"{folder} cannot be resumed: {e.reason}") from None
    if record.get("command") != "compare-apis":
        raise KcnnError(
            f"{folder} is not a `kcnn compare-apis` folder; use `kcnn {record.get('command')} "
            "--resume` for it"
        )
    if run.has(COMPARISON_JSON):
        raise KcnnError(f"{folder} is a finished comparison; start a new one to train again")
    settings = {k: v for k, v in record.items() if k in CompareConfig.settings()}
    return CompareConfig.from_settings(settings, source=str(folder / folders.CONFIG)).validate()


def _write_report(
    result: CompareResult, config: CompareConfig, dataset: str, parts, input_shape, report
) -> None:
    h, w, c = input_shape
    init = (
        "same initial weights (copied from the first form)"
        if config.same_init
        else f"independent initial weights (seeds {config.seed}..{config.seed + len(config.apis) - 1})"
    )
    intro = (
        f"`{config.arch}` built as {', '.join(config.apis)} models, trained on `{dataset}` "
        f"({h}×{w}×{c}, {parts.num_classes} classes; {parts.sizes()['train']:,} train / "
        f"{parts.sizes()['val']:,} validation / {parts.sizes()['test']:,} test images) for "
        f"{config.epochs} epochs with {config.optimizer} (lr {config.lr:g}), batch {config.batch_size}, "
        f"seed {config.seed}: identical data order, {init}."
    )
    a = result.agreement
    gaps = ", ".join(f"{k} {v:.2e}" for k, v in a["max_curve_gap"].items())
    agreement = "\n\n".join(
        [
            "## Agreement",
            f"Test accuracy spread (max − min): **{a['test_accuracy_spread']:.4f}**; test loss spread "
            f"{a['test_loss_spread']:.4f}. Largest per-epoch gap to `{config.apis[0]}`: {gaps}.",
            (
                "With the same initial weights and data order the forms compute the same training steps; what is "
                "left is floating-point noise."
                if config.same_init
                else "Each form started from its own random weights, so the spread above is seed-to-seed variation, "
                "not a difference between the APIs."
            ),
            "Each form's own run folder (metrics.json, history.csv, curves, confusion matrix, model.keras): "
            + ", ".join(f"`{r['run_dir']}/`" for r in result.rows)
            + ".",
        ]
    )
    report.write_comparison(
        result.folder,
        f"{config.arch}: {' vs '.join(config.apis)} on {dataset}",
        result.rows,
        result.histories,
        intro=intro,
        sections=[agreement, result.proof.markdown()],
    )
