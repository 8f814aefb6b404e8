"""`kcnn summary`: an architecture layer by layer — output shapes and parameters as Keras builds
them, multiply-adds and receptive fields from the specs (`kcnn.models.geometry`), and a check that
every conv and pooling layer's output size is ⌊(N + 2p − k)/s⌋ + 1."""

from __future__ import annotations

import keras

from kcnn.models import forms, geometry
from kcnn.models.architectures import get as get_architecture
from kcnn.models.blocks import Block
from kcnn.models.params import count_params
from kcnn.models.profile import profile as profile_pass


def _rows(model) -> list[dict]:
    """One row per top-level layer in execution order (a block is one row in Sequential and
    subclassed forms; the Functional form shows its branches as separate layers)."""
    rows = []
    if isinstance(model, forms.DescribedCNN):
        layers = list(model.stages)
        x = keras.KerasTensor((None, *model.image_shape))
        shapes = []
        for layer in layers:
            x = layer.compute_output_spec(x)
            shapes.append(tuple(x.shape))
    else:
        layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
        shapes = [tuple(layer.output.shape) for layer in layers]
    for layer, shape in zip(layers, shapes, strict=True):
        # a block row names its kind (BasicBlock, Inception), not the generic holder layer
        kind = type(layer.spec if isinstance(layer, Block) else layer).__name__
        rows.append(
            {
                "name": layer.name,
                "type": kind,
                "output_shape": [d for d in shape[1:]],
                "params": int(layer.count_params()),
            }
        )
    return rows


def _timing_columns(row: dict) -> str:
    def ms(seconds: float) -> str:
        return f"{seconds * 1e3:.3f}".replace("-0.000", "0.000")  # noise rounded to 0 is 0

    low, high = row["interval"]
    share = "" if row["share"] is None else f"{row['share']:.1%}".replace("-0.0%", "0.0%")
    return f"{ms(row['seconds']):>9}{f'[{ms(low)}, {ms(high)}]':>18}{share:>7}"


def _timing_lines(timing: dict) -> list[str]:
    """What the time column means: the pass it adds up to, and how it was measured."""
    whole, call = timing["pass_seconds"], timing["call_seconds"]
    call_share = f" ({call / whole:.1%})" if whole > 0 else ""
    return [
        f"one forward pass, batch of {timing['batch']} on this machine: {whole * 1e3:.3f} ms = "
        f"the call's own cost {call * 1e3:.3f} ms{call_share} + the layers above "
        f"{(whole - call) * 1e3:.3f} ms (the model called as itself: "
        f"{timing['model_seconds'] * 1e3:.3f} ms)",
        f"each layer's time is the pass up to it minus the pass up to the layer before, inside "
        f"one traced call (medians of {timing['rounds']} shuffled rounds); shares are of the "
        f"whole pass; an interval (95%, rounds resampled) around 0 is a layer too cheap to tell "
        f"apart here",
    ]


def shape_check(model, leaves: list[geometry.Leaf]) -> dict:
    """Every conv and pooling layer: the output size Keras's own layer computes for its input
    (after its padding layer, if any) against ⌊(N + 2p − k)/s⌋ + 1 (⌈…⌉ + 1 in ceil mode)."""
    layers = forms.leaves(model)
    checked, mismatches = 0, []
    for leaf in leaves:
        if leaf.window is None:
            continue
        shape = (None, *leaf.input_shape)
        for name in (f"{leaf.name}_pad", leaf.name):
            if name in layers:
                shape = layers[name].compute_output_shape(shape)
        keras_hw, formula_hw = tuple(shape[1:3]), tuple(leaf.output_shape[:2])
        checked += 1
        if keras_hw != formula_hw:
            mismatches.append(
                {
                    "layer": leaf.name,
                    "input": list(leaf.input_shape[:2]),
                    "kernel": leaf.window.kernel,
                    "stride": leaf.window.stride,
                    "padding": leaf.window.padding,
                    "ceil": leaf.window.ceil,
                    "keras": list(keras_hw),
                    "formula": list(formula_hw),
                }
            )
    return {"checked": checked, "mismatches": mismatches}


def summarize(arch: str, api: str, input_shape, classes: int, profile: bool = False) -> dict:
    """The layer table; `profile` adds each layer's measured share of one forward pass (batch of
    1: `kcnn.models.profile`)."""
    architecture = get_architecture(arch)
    model = forms.build(arch, api, input_shape, classes)
    specs = architecture.describe(classes)
    leaves = geometry.trace(specs, tuple(input_shape))
    rows = _layer_rows(model, specs, leaves)
    timing = profile_pass(model, tuple(input_shape)) if profile else None
    if timing is not None:
        for r in rows:
            r.update(timing["layers"][r["name"]])
    params = count_params(model)
    total_macs = geometry.totals(leaves).macs
    check = shape_check(model, leaves)
    shape_now = (tuple(input_shape), classes)
    shape_then = (architecture.input_shape, architecture.reference_classes)
    reference = architecture.reference_params if shape_now == shape_then else None
    lines = [f"{arch} ({api}), input {'×'.join(map(str, input_shape))}, {classes} classes"]
    lines += _table_lines(rows, timing)
    lines.append(
        f"total parameters {params['total']:,} (trainable {params['trainable']:,}, "
        f"non-trainable {params['non_trainable']:,}); multiply-adds {total_macs:,} "
        f"({geometry.human(total_macs)})"
    )
    if timing is not None:
        lines += _timing_lines(timing)
    if reference is not None:
        verdict = "matches" if params["trainable"] == reference else "DOES NOT MATCH"
        lines.append(
            f"reference (paper) parameters {reference:,}: {verdict} the learned (trainable) count"
        )
    lines += _check_lines(check, ceil=any(leaf.window.ceil for leaf in leaves if leaf.window))
    return {
        "arch": arch,
        "api": api,
        "input_shape": list(input_shape),
        "classes": classes,
        "total_params": params["total"],
        "trainable_params": params["trainable"],
        "non_trainable_params": params["non_trainable"],
        "total_macs": total_macs,
        "reference_params": reference,
        "reference_match": None if reference is None else params["trainable"] == reference,
        "shape_check": check,
        "layers": rows,
        **({"profile": {k: v for k, v in timing.items() if k != "layers"}} if timing else {}),
        "text": "\n".join(lines),
    }


def _layer_rows(model, specs, leaves) -> list[dict]:
    """The model's layers, each with its multiply-adds, receptive field and output-size formula
    from the architecture's description."""
    cost = geometry.by_layer(specs, leaves)
    windows = {leaf.name: leaf for leaf in leaves if leaf.window}
    rows = _rows(model)
    for r in rows:
        known = cost.get(r["name"], {"macs": 0, "rf": None})
        r["macs"], r["receptive_field"] = known["macs"], known["rf"]
        leaf = windows.get(r["name"])
        r["formula"] = geometry.formula(leaf.input_shape[0], *leaf.window) if leaf else None
    return rows


def _table_lines(rows: list[dict], timing: dict | None) -> list[str]:
    """The layer table: a header and one line per layer."""
    width = max(len(r["name"]) for r in rows) + 2
    lines = [
        f"{'layer':<{width}}{'type':<24}{'output shape':<16}{'params':>12}{'mult-adds':>11}"
        f"{'recept.':>10}"
        + (f"{'time ms':>9}{'95% interval':>18}{'share':>7}" if timing else "")
        + "  output size ⌊(N + 2p − k)/s⌋ + 1",
    ]
    for r in rows:
        shape = "×".join(str(d) for d in r["output_shape"])
        rf = geometry.describe_rf(r["receptive_field"])
        lines.append(
            f"{r['name']:<{width}}{r['type']:<24}{shape:<16}{r['params']:>12,}"
            f"{geometry.human(r['macs']):>11}{rf:>10}"
            + (_timing_columns(r) if timing else "")
            + f"  {r['formula'] or ''}"
        )
    return lines


def _check_lines(check: dict, ceil: bool) -> list[str]:
    """What the output-size check found: each mismatch, or that all agree."""
    if not check["mismatches"]:
        ceil_note = " (⌈…⌉ + 1 for ceil-mode pools)" if ceil else ""
        return [
            f"output sizes: all {check['checked']} conv and pooling layers equal "
            f"⌊(N + 2p − k)/s⌋ + 1{ceil_note}"
        ]
    return [
        f"SHAPE MISMATCH at {m['layer']}: Keras gives {m['keras']}, "
        f"{'⌈' if m['ceil'] else '⌊'}(N + 2p − k)/s{'⌉' if m['ceil'] else '⌋'} + 1 "
        f"gives {m['formula']} (N={m['input']}, k={m['kernel']}, "
        f"s={m['stride']}, p={m['padding']})"
        for m in check["mismatches"]
    ]
