"""What one run records, in memory while it trains and on disk through its folder.

The records of a run folder (config.json, metrics.json, the model, the pictures, report.html)
are written here and nowhere else; `kcnn.runs.run.RunFolder` owns the folder itself (its
layout, lock, fresh writes and checked reads). A command makes a `RunRecords`, adds what it
knows (what the model is, the facts of its data, its own results) and hands it to the trainer.
"""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path
from typing import Any

from kcnn.engine import interrupts
from kcnn.runs import folders
from kcnn.runs.run import RUN_FACTS, RunFolder


class RunRecords:
    """What one run records, kept in memory and written through its folder: config.json (the
    command, its settings, what the model is, the facts of the run, versions), metrics.json (the
    status, the results so far, the final figures), the model, its pictures and report.html.
    A command makes it and hands it to the trainer; commands add facts and results here, the
    trainer writes the status as epochs finish. The folder is made on `open`, not before."""

    def __init__(
        self,
        command: str,
        settings: dict[str, Any],
        identity: dict[str, Any] | None = None,
        facts: dict[str, Any] | None = None,
        folder: str | Path | None = None,
    ):
        self.command = command
        self.settings = settings
        self.identity = dict(identity or {})  # arch and API form, or backbone and head
        self.facts = dict(facts or {})  # what config.json holds besides settings
        self.results: dict[str, Any] = {}  # what metrics.json holds besides the status
        self.folder: RunFolder | None = RunFolder(folder) if folder is not None else None
        self._made_out: Path | None = None  # an output folder made for this run alone

    @property
    def path(self) -> Path | None:
        return self.folder.path if self.folder is not None else None

    # --- the folder ----------------------------------------------------------------------------

    def open(self, out: str | Path, name: str) -> Path:
        """Make the run's folder (once), lock it, and write config.json and a `running` status."""
        if self.folder is None:
            out = Path(out).expanduser()
            self._made_out = None if out.exists() else out
            self.folder = RunFolder.create(out, name)
        self.folder.lock()
        self.write_config()
        return self.folder.path

    def rename(self, name: str) -> Path:
        """Name the (locked) folder anew under its time stamp: the run's data set turned out to
        be a stand-in for the one asked for."""
        self.folder.rename(name)
        return self.folder.path

    def unlock(self) -> None:
        if self.folder is not None:
            self.folder.unlock()

    def discard(self) -> None:
        """Remove a folder made for a run refused before it trained (and its --out, if made for it)."""
        if self.folder is None:
            return
        self.folder.unlock()
        shutil.rmtree(self.folder.path, ignore_errors=True)
        if self._made_out is not None:
            with contextlib.suppress(OSError):
                self._made_out.rmdir()

    # --- config.json ---------------------------------------------------------------------------

    def config_record(self) -> dict[str, Any]:
        unknown = (set(self.identity) | set(self.facts)) - RUN_FACTS
        assert not unknown, f"add {sorted(unknown)} to RUN_FACTS"  # a kcnn bug, not bad input
        return {
            "command": self.command,
            **self.settings,
            **self.identity,
            **self.facts,
            "versions": folders.versions(),
        }

    def add_facts(self, **facts: Any) -> None:
        """Facts of the run, written to config.json at once (when the folder exists)."""
        self.facts.update(facts)
        self.write_config()

    def write_config(self) -> None:
        if self.folder is not None:
            self.folder.write_json(folders.CONFIG, self.config_record())

    # --- metrics.json and the rest -------------------------------------------------------------

    def metrics_record(self, status: str, **figures: Any) -> dict[str, Any]:
        return {
            "command": self.command,
            **self.identity,
            **self.results,
            "status": status,
            **figures,
        }

    def write_status(self, status: str, **figures: Any) -> dict[str, Any]:
        record = self.metrics_record(status, **figures)
        self.folder.write_json(folders.METRICS, record)
        return record

    def metrics_text(self) -> str:
        """metrics.json as it is (a refused resume puts it back as it found it)."""
        return self.folder.text(folders.METRICS)

    def restore_metrics(self, text: str) -> None:
        self.folder.write_text(folders.METRICS, text)

    def write_summary(self, text: str) -> None:
        self.folder.write_text(folders.SUMMARY, text)

    def write_typical(self, typical) -> None:
        """What the training images look like (a `kcnn.data.typical.Typical`; None: too few
        images to say, and nothing is written)."""
        if typical is not None:
            self.folder.write_json(folders.TYPICAL, typical.record())

    def write_nearest(self, check) -> None:
        """The training images' features and the distance threshold (a `kcnn.data.nearest.Nearest`;
        None: nothing to check with, and nothing is written)."""
        if check is not None:
            from kcnn.runs import arrays

            self.folder.write_text(folders.NEAREST, arrays.to_bytes(check.arrays()))

    def write_test_predictions(
        self, index, true, probabilities, files=None, held_out: bool = False, name: str = ""
    ) -> None:
        """The per-image test results (`kcnn.runs.predictions`): each test image's position in
        its data, true class and class probabilities (float32, images × classes), and for an
        image folder its file. `name`: another file of the same form (a fold's validation)."""
        from kcnn.runs import predictions

        results = predictions.ImageResults.build(index, true, probabilities, files, held_out)
        self.folder.write_text(name or predictions.NAME, results.to_bytes())

    def write_fold_predictions(self, index, true, probabilities, files=None) -> None:
        """A fold's answers on the fold it held out (`--folds`), in the per-image record's form:
        positions into the training images, which the group gathers (`kcnn.runs.out_of_fold`)."""
        self.write_test_predictions(
            index, true, probabilities, files, name=folders.FOLD_PREDICTIONS
        )

    def save_model(self, model) -> None:
        self.folder.save_model(model)

    def draw(self, history, matrix, class_names: list[str], title: str) -> None:
        """curves.png and confusion_matrix.png, each written to a fresh file then renamed. A
        picture that cannot be drawn is a warning: it never costs the epochs already paid for."""
        from kcnn.runs import plots

        drawings = (
            (folders.CURVES, lambda path: plots.curves(history, path, title=title)),
            (
                folders.CONFUSION,
                lambda path: plots.confusion_matrix(
                    matrix, class_names, path, title=f"{title}: test set"
                ),
            ),
        )
        for name, draw in drawings:  # a picture is not worth a finished run; a stop still stops
            with interrupts.only_a_warning(f"{self.folder.path / name} not drawn"):
                with self.folder.new_file(name, ".png") as tmp:
                    draw(tmp)

    def write_report(self) -> None:
        from kcnn.runs.html import write_report_after

        write_report_after(self.folder.path)

    def tensorboard(self, histograms: bool):
        from kcnn.runs.tracking import tensorboard_callback

        return tensorboard_callback(self.folder.path, histograms)
