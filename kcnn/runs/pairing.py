"""Whether two runs were tested on the same images, and the verdict between single runs.

Two runs pair image by image when both kept their per-image test results
(`kcnn.runs.predictions`), their data fingerprints are equal (the very same images and labels)
and their test images came from the same positions of that data in the same order: then image i
of one is image i of the other. Otherwise the reason is said in words, and the verdict falls
back to the unpaired comparison of two proportions (`kcnn.runs.verdict`). No TensorFlow.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kcnn import text
from kcnn.runs import verdict
from kcnn.runs.records import Damaged

MAX_RUNS = 10  # single runs judged pair by pair in one comparison (45 pairs)


def _results(info) -> tuple[Any, str | None]:
    """A run's per-image results, or why there are none to use."""
    from kcnn.runs.run import RunFolder

    try:
        return RunFolder(info.folder).test_predictions(), None
    except FileNotFoundError:
        return None, "keeps no per-image test results (trained before kcnn kept them)"
    except Damaged as e:
        return None, f"has damaged per-image test results ({e.reason})"


def why_not_paired(a, b, results_a, results_b, names: tuple[str, str]) -> str | None:
    """Why runs a and b (RunInfo) cannot be compared image by image; None when they can."""
    fingerprints = [r.settings.get("data_fingerprint") for r in (a, b)]
    if None in fingerprints:
        missing = names[fingerprints.index(None)]
        return f"{missing} records no fingerprint of its data"
    if fingerprints[0] != fingerprints[1]:
        return "they were tested on different data (their data fingerprints differ)"
    if results_a.held_out != results_b.held_out or not np.array_equal(
        results_a.index, results_b.index
    ):
        seeds = [r.settings.get("seed") for r in (a, b)]
        because = f" (the held-out test set follows the seed: {seeds[0]} and {seeds[1]})"
        held = results_a.held_out and results_b.held_out and seeds[0] != seeds[1]
        return "they were tested on different images of the same data" + (because if held else "")
    if not np.array_equal(results_a.true, results_b.true):
        return "their test images carry different labels"
    return None


def judge(a, b, names: tuple[str, str]) -> verdict.Verdict | str:
    """b against a (RunInfo of two finished runs) in test accuracy: paired when they were
    tested on the same images, else unpaired; a string says why there can be no verdict."""
    results_a, why_a = _results(a)
    results_b, why_b = _results(b)
    why = None
    if why_a or why_b:
        why = f"{names[0]} {why_a}" if why_a else f"{names[1]} {why_b}"
    else:
        why = why_not_paired(a, b, results_a, results_b, names)
    if why is None:
        return verdict.paired(results_a.correct, results_b.correct, names)
    counts = [_counts(r, found) for r, found in ((a, results_a), (b, results_b))]
    if None in counts:
        lacking = names[counts.index(None)]
        return f"no verdict between {names[0]} and {names[1]}: {lacking} records no test-set size"
    (k_a, n_a), (k_b, n_b) = counts
    return verdict.unpaired(k_a, n_a, k_b, n_b, names, why)


def _counts(info, results) -> tuple[int, int] | None:
    """How many test images a run got right, of how many."""
    if results is not None:
        return int(np.sum(results.correct)), results.n
    n = info.test_images
    k = None if n is None or info.test_accuracy is None else verdict.right_of(info.test_accuracy, n)
    return None if k is None else (k, n)


@dataclass
class Judged:
    """The verdicts between the single runs of a comparison, and what could not be judged."""

    verdicts: list[verdict.Verdict]
    notes: list[str]

    def records(self) -> list[dict[str, Any]]:
        return [v.as_dict() for v in self.verdicts]

    def sentences(self) -> list[str]:
        return [v.sentence() for v in self.verdicts] + self.notes

    def markdown(self) -> str:
        """The section of comparison.md: the method, then one sentence per pair."""
        if not self.verdicts and not self.notes:
            return ""
        method = (
            "Test accuracy of single runs, pair by pair (second minus first). Runs tested on the "
            f"same images are paired image by image: {verdict.PAIRED_TEST} on the images one got "
            f"right and the other wrong, with a {verdict.PAIRED_INTERVAL} interval of the "
            f"difference. Runs on different images: the pooled {verdict.UNPAIRED_TEST}-test, with "
            f"the {verdict.UNPAIRED_INTERVAL} interval. With one run each, this is whether these "
            "two trained models differ, not whether their recipes do (`--seeds` tests recipes)."
        )
        # the runs' labels are names from anyone: escaped as every markdown cell is
        lines = "\n".join(f"- {text.markdown_cell(s)}" for s in self.sentences())
        return f"## Single runs\n\n{method}\n\n{lines}"


def single_runs(runs: Sequence, grouped: dict[str, list], labels: Sequence[str]) -> Judged:
    """Every pair of the comparison's single runs (runs alone in their group; two runs compared
    are always judged), Holm-corrected over the pairs when there are several."""
    label_of = {id(r): label for r, label in zip(runs, labels, strict=True)}
    alone = list(runs) if len(runs) == 2 else [g[0] for g in grouped.values() if len(g) == 1]
    if len(alone) < 2:
        return Judged([], [])
    if len(alone) > MAX_RUNS:
        note = f"{len(alone)} single runs: too many to judge pair by pair (at most {MAX_RUNS})"
        return Judged([], [note])
    found, notes = [], []
    for i, a in enumerate(alone):
        for b in alone[i + 1 :]:
            judged = judge(a, b, (label_of[id(a)], label_of[id(b)]))
            (notes if isinstance(judged, str) else found).append(judged)
    family = f"the {len(found)} pairs of single runs compared"
    return Judged(verdict.corrected(found, family), notes)
