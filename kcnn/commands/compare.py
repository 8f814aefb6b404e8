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

from kcnn.commands import teacher
from kcnn.commands.command import (
    Command,
    Member,
    Outcome,
    members,
    resumed_facts,
    settings_to_resume,
)
from kcnn.data.prepared import prepare_data
from kcnn.engine import checkpoints, distribute, interrupts
from kcnn.engine.config import CompareConfig
from kcnn.engine.recording import RATE
from kcnn.engine.trainer import (
    RunResult,
    Trainer,
    default_input_shape,
    record_stand_in,
    seed_everything,
)
from kcnn.errors import KcnnError, ModelMismatchError
from kcnn.models.equivalence import Proof, prove_equivalent
from kcnn.progress import heading, steps, stream
from kcnn.runs import folders, tables
from kcnn.runs.browse import interval_cell
from kcnn.runs.folders import COMPARISON_JSON, COMPARISON_MD, PROOF_JSON
from kcnn.runs.recorder import RunRecords
from kcnn.runs.records import write_json
from kcnn.runs.run import RunFolder


def proof_markdown(proof: Proof) -> str:
    """The proof as comparison.md shows it: the per-form table, the layers, the verdict."""
    form_rows = proof.form_rows()
    layer_rows = proof.layer_rows()
    return "\n\n".join(
        [
            "## Proof before training",
            f"The weights of `{proof.reference}` were copied into the other forms and one batch of "
            f"{proof.batch_size} real images was run through each in inference mode (BatchNorm uses its "
            f"moving statistics).",
            tables.as_markdown(form_rows, list(form_rows[0])),
            "### Weight shapes, layer by layer",
            tables.as_markdown(layer_rows, list(layer_rows[0]))
            if layer_rows
            else "(no layer holds weights)",
            f"**{'Verdict' if proof.equivalent else 'MISMATCH'}:** {proof.message()}",
        ]
    )


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


# With independent initial weights, form i of seed s starts from seed s + i × INIT_STRIDE: far
# apart, so the forms of consecutive seeds (a `--seeds` group) never share initial weights.
INIT_STRIDE = 1_000_003


def init_seed(seed: int, form: int) -> int:
    """The initialisation seed of the `form`-th API form under --independent-init."""
    return (seed + form * INIT_STRIDE) % 2**32


def _build_forms(config: CompareConfig, input_shape, classes: int, shown=None) -> tuple[dict, dict]:
    """Build every form, timing each build.

    With same_init every form is built from the same seed, so even randomness fixed at build time
    (a Dropout layer's seed) matches; the weights are copied from the first form afterwards anyway.
    With independent init each form gets its own seed (seed, seed+1, ...), as three separate
    notebook cells would.
    """
    from kcnn.models import forms  # Keras: only once a model is built

    # A throw-away build first, so TensorFlow's one-time start-up cost is not charged to the first form.
    forms.build(config.arch, config.apis[0], input_shape, classes)
    models, seconds = {}, {}
    for i, api in enumerate(config.apis):
        seed_everything(config.seed if config.same_init else init_seed(config.seed, i))
        start = time.perf_counter()
        models[api] = forms.build(config.arch, api, input_shape, classes)
        seconds[api] = time.perf_counter() - start
        if shown is not None:  # the progress of building and proving (`kcnn.progress.Steps`)
            shown.advance(note=f"built the {api} form")
    return models, seconds


def _agreement(
    rows: list[dict[str, Any]], histories: dict[str, dict[str, list[float]]]
) -> dict[str, Any]:
    """How far the forms' results lie apart: test-accuracy spread and the largest curve gap (of
    the measured curves: the learning rate is a setting, the same in every form by design)."""
    accuracies = [row["test_accuracy"] for row in rows]
    names = list(histories)
    curves = {}
    for key in (k for k in histories[names[0]] if k != RATE):
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
    dist = distribute.activate(config)  # before TensorFlow starts: devices, cluster, scratch out
    started = time.perf_counter()
    prepared = prepare_data(config, default_input_shape(config.arch, config.image_size))
    if resume is None:  # an offline stand-in's data set names the comparison and its forms
        record_stand_in(config, prepared)
    models, build_seconds, proof = _prove(config, prepared, dist, quiet)
    if on_proof is not None:
        on_proof(proof)
    if not proof.equivalent:
        error = ModelMismatchError(proof.message())
        error.proof = proof
        error.details = {"proof": proof.as_dict()}  # what --json answers beside the error
        raise error
    if config.same_init:
        from kcnn.models import forms  # Keras: the models exist already

        for api in config.apis[1:]:
            forms.copy_weights(models[config.apis[0]], models[api])
    settings = {
        "command": config.command,
        **config.settings_dict(),
        "input_shape": list(prepared.input_shape),
        "init": "same" if config.same_init else "independent",
    }
    if resume is None:
        folder = folders.create(config.out, config.name)
        write_json(folder / folders.CONFIG, {**settings, "versions": folders.versions()})
        write_json(folder / PROOF_JSON, proof.as_dict())
        found = {}
    else:
        folder = Path(resume)
        found = members(folder, "api", "train")
    rows, histories = [], {}
    for i, api in enumerate(config.apis):
        interrupts.check_stop(f"continue with: kcnn compare-apis --resume {folder}")
        heading(i + 1, len(config.apis), f"{api} — {config.arch} on {prepared.data.name}", quiet)
        form = config.form_config(api).validate()
        result = _train_form(
            form, _facts(config, i), models[api], build_seconds[api], prepared, folder,
            found.get(api), quiet,
        )  # fmt: skip
        models[api] = None  # free each form once it is recorded
        rows.append(_row(api, result, proof))
        histories[api] = result.history
    settings["wall_seconds"] = time.perf_counter() - started
    result = CompareResult(folder, proof, rows, histories, _agreement(rows, histories), settings)
    _write_report(result, config, prepared.data.name, prepared.parts, prepared.input_shape)
    write_json(folder / COMPARISON_JSON, result.as_dict())
    return result


def _prove(config: CompareConfig, prepared, dist, quiet: bool):
    """Every form built (under the strategy the trainers fit under) and proven the same network
    on one real batch, exactly as the model sees it in training: from the test split, through
    the pipeline. Returns the models, each one's build time and the proof."""
    from kcnn.data.pipeline import make_dataset  # TensorFlow: only once a run starts

    count = len(config.apis)
    title = f"{config.arch}: {count} forms built and proven"
    with steps(title, count + 1, "steps", quiet=quiet) as shown:
        with dist.scope():
            models, seconds = _build_forms(config, prepared.input_shape, prepared.classes, shown)
        parts = prepared.parts
        batches = make_dataset(parts.x_test, parts.y_test, prepared.input_shape, config.batch_size)
        sample, _ = next(iter(batches))
        proof = prove_equivalent(models, sample, config.tolerance)
        shown.advance(note=f"proof: every form on one batch of {len(sample)} images")
    return models, seconds, proof


def _facts(config: CompareConfig, form: int) -> dict[str, Any]:
    """What one form's config.json records about its place in the comparison."""
    api, reference = config.apis[form], config.apis[0]
    return {
        "part_of": config.command,
        "init": "same" if config.same_init else "independent",
        "init_seed": config.seed if config.same_init else init_seed(config.seed, form),
        "initial_weights_from": reference if config.same_init and api != reference else None,
    }


def _row(api: str, result: RunResult, proof: Proof) -> dict[str, Any]:
    """One form's line of the comparison."""
    m = result.metrics
    return {
        "form": api,
        "parameters": m["params"]["total"],
        "test_loss": m["test_loss"],
        "test_accuracy": m["test_accuracy"],
        "test_accuracy_95ci": interval_cell(result.run_dir),  # Wilson, from the test size
        "best_val_accuracy": m["best_val_accuracy"],
        "build_seconds": m["build_seconds"],
        "seconds_per_epoch": m["seconds_per_epoch"],
        "images_per_second": m["train_images_per_second"],
        "max_abs_output_diff": next(
            r["max_abs_output_diff"] for r in proof.forms if r["form"] == api
        ),
        "run_dir": Path(result.run_dir).name,
    }


def _train_form(
    form, facts, model, build_seconds, prepared, folder: Path, found: Member | None, quiet
) -> RunResult:
    """Train one API form in its run folder inside the comparison `folder` (or, resuming,
    finish the form's folder `found`: nothing if it completed, from its checkpoint if it has
    one)."""
    if found is not None and found.result is not None:
        return found.result
    state = found.state if found is not None else None
    identity = {"arch": form.arch, "api": form.api}
    if state is not None:
        facts = resumed_facts(found.record, state, identity)
    records = RunRecords(
        form.command, form.settings_dict(), identity, facts, folder=found.folder if state else None
    )
    hint = f"kcnn compare-apis --resume {folder}"
    trainer = Trainer(
        form, records, quiet=quiet, out=folder, resume=state, resumable=True, resume_hint=hint
    )
    with trainer.running():
        trainer.use(prepared)
        teacher.attach(trainer)  # --teacher's soft labels (each form distils from the same)
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
        return trainer.finish(model, title=f"{form.arch} ({form.api}) on {prepared.data.name}")


def resume(folder: str | Path, quiet: bool = False, on_proof=None) -> CompareResult:
    """Finish an interrupted `kcnn compare-apis` in its folder: each form that completed is kept,
    an interrupted one continues from its checkpoint, one never started is trained; every number
    is what an uninterrupted comparison would have given."""
    config = resume_config(folder)
    return compare_apis(config, on_proof=on_proof, quiet=quiet, resume=Path(folder).expanduser())


def resume_config(folder: str | Path) -> CompareConfig:
    """The settings of an interrupted comparison, checked as a new run's are."""
    config = settings_to_resume(folder, CompareConfig, "comparison")
    if RunFolder(Path(folder).expanduser()).has(COMPARISON_JSON):
        raise KcnnError(f"{folder} is a finished comparison; start a new one to train again")
    return config.validate()


def _write_report(
    result: CompareResult, config: CompareConfig, dataset: str, parts, input_shape
) -> None:
    from kcnn.runs import report  # matplotlib: only once there is a report to draw

    h, w, c = input_shape
    init = (
        "same initial weights (copied from the first form)"
        if config.same_init
        else "independent initial weights (seeds "
        + ", ".join(str(init_seed(config.seed, i)) for i in range(len(config.apis)))
        + ")"
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
        sections=[agreement, proof_markdown(result.proof)],
    )


class CompareApis(Command):
    """`kcnn compare-apis`: one architecture in several API forms, proven the same network,
    trained side by side; a comparison folder with one run folder per form."""

    name = "compare-apis"
    config = CompareConfig
    finished_file = COMPARISON_JSON

    def title(self, config: CompareConfig) -> str:
        return f"{config.arch} as {', '.join(config.apis)}"

    def several(self, config: CompareConfig) -> bool:
        return True

    def trainings(self, config: CompareConfig) -> int:
        return len(config.apis)

    def start(self, config: CompareConfig, quiet: bool = False) -> Outcome:
        return self._outcome(compare_apis(config, on_proof=_shown(config, quiet), quiet=quiet))

    def resume(self, folder: Path, quiet: bool = False) -> Outcome:
        config = resume_config(folder)
        result = compare_apis(
            config, on_proof=_shown(config, quiet), quiet=quiet, resume=Path(folder).expanduser()
        )
        return self._outcome(result)

    def _outcome(self, result: CompareResult) -> Outcome:
        run_dirs = [result.folder / row["run_dir"] for row in result.rows]
        metrics = [RunFolder(d).metrics() for d in run_dirs]
        outcome = Outcome(self.name, run_dirs, metrics, comparison=result.folder)
        outcome.details = {k: v for k, v in result.as_dict().items() if k != "folder"}
        headers = ["form", "test acc", "95% CI", "test loss", "best val acc", "build s", "s/epoch"]
        table = tables.as_text(
            result.rows,
            ["form", "test_accuracy", "test_accuracy_95ci", "test_loss", "best_val_accuracy",
             "build_seconds", "seconds_per_epoch", "images_per_second"],
            [*headers, "images/s"],
        )  # fmt: skip
        spread = result.agreement["test_accuracy_spread"]
        outcome.lines = [
            "",
            *table.splitlines(),
            f"test accuracy spread {spread:.4f} ({result.config['init']} initial weights)",
            f"report: {result.folder / COMPARISON_MD}",
        ]
        return outcome


def _shown(config: CompareConfig, quiet: bool):
    """The proof, shown as soon as it is done (before training), where progress goes."""

    def show(proof: Proof) -> None:
        if not quiet:
            print(
                f"{config.arch} in {len(proof.forms)} forms: proof before training "
                f"(weights of {proof.reference} copied into the others)\n{proof.text()}\n",
                file=stream(quiet),
                flush=True,
            )

    return show


COMPARE_APIS = CompareApis()
