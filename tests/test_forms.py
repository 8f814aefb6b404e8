"""One description, three forms: equal parameters and identical outputs (LeNet-5 and the seed CNNs)."""

import numpy as np
import pytest

from kcnn.errors import KcnnError
from kcnn.models import forms
from kcnn.models.architectures import ARCHITECTURES, get

APIS = ("sequential", "functional", "subclassed")


@pytest.mark.parametrize("arch", ["lenet5", "simple-cnn", "mnist-cnn"])
def test_reference_parameters_in_every_form(arch):
    a = get(arch)
    counts = {
        api: forms.build(arch, api, a.input_shape, a.reference_classes).count_params()
        for api in APIS
    }
    assert counts == {api: a.reference_params for api in APIS}


def test_copied_weights_give_identical_outputs():
    models = {api: forms.build("lenet5", api, (32, 32, 1), 10) for api in APIS}
    x = np.random.default_rng(0).random((4, 32, 32, 1)).astype("float32")
    assert (
        np.abs(models["sequential"](x) - models["functional"](x)).max() > 0
    )  # independent init differs
    for api in ("functional", "subclassed"):
        forms.copy_weights(models["sequential"], models[api])
        assert float(np.abs(models["sequential"](x) - models[api](x)).max()) <= 1e-6
    assert forms.weight_shapes(models["sequential"]) == forms.weight_shapes(models["subclassed"])


def test_too_small_input_names_the_smallest_size():
    with pytest.raises(KcnnError, match="smallest input that works is 32×32"):
        forms.build("lenet5", "functional", (28, 28, 1), 10)


def test_every_registered_architecture_has_a_consistent_entry():
    for name, a in ARCHITECTURES.items():
        assert a.name == name and a.min_size(a.input_shape[2]) <= a.input_shape[0]
