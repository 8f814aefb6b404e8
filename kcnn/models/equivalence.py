"""Proving that Keras models are the same network: equal parameter counts, equal weight shapes
layer by layer, and outputs that agree on a real batch once one model's weights are copied into
the others. `kcnn compare-apis` proves its three API forms equal this way before training them;
`prove_equivalent` works on any dict of Keras models.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kcnn import defaults
from kcnn.errors import KcnnError, ModelMismatchError
from kcnn.models.params import count_params

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
