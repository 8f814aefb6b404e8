"""`kcnn summary`: an architecture layer by layer — output shapes and parameters."""

from __future__ import annotations

import keras

from kcnn import forms
from kcnn.training import count_params


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
    for layer, shape in zip(layers, shapes):
        rows.append({"name": layer.name, "type": type(layer).__name__,
                     "output_shape": [d for d in shape[1:]], "params": int(layer.count_params())})
    return rows


def summarize(arch: str, api: str, input_shape, classes: int) -> dict:
    model = forms.build(arch, api, input_shape, classes)
    rows = _rows(model)
    params = count_params(model)
    width = max(len(r["name"]) for r in rows) + 2
    lines = [f"{arch} ({api}), input {'×'.join(map(str, input_shape))}, {classes} classes",
             f"{'layer':<{width}}{'type':<22}{'output shape':<20}{'params':>12}"]
    for r in rows:
        shape = "×".join(str(d) for d in r["output_shape"])
        lines.append(f"{r['name']:<{width}}{r['type']:<22}{shape:<20}{r['params']:>12,}")
    lines.append(f"total parameters {params['total']:,} (trainable {params['trainable']:,})")
    return {"arch": arch, "api": api, "input_shape": list(input_shape), "classes": classes,
            "total_params": params["total"], "trainable_params": params["trainable"],
            "layers": rows, "text": "\n".join(lines)}
