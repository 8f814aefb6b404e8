"""Each spec says its own parameters, multiply-adds and window; an unknown one is an error."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from kcnn.models import geometry
from kcnn.models.composites import BasicBlock, Inception
from kcnn.models.layers import BatchNorm, BlockSpec, Conv, Dense, Pool, Spec
from kcnn.models.windows import Window


@dataclass(frozen=True)
class _Unknown(Spec):
    """A spec that says its shape but not its cost."""

    def output_shape(self, shape):
        return shape


def test_a_spec_that_does_not_count_itself_is_an_error_not_a_zero():
    with pytest.raises(NotImplementedError, match="_Unknown does not say its parameters"):
        geometry.trace([Conv(4, 3, name="c"), _Unknown(name="u")], (8, 8, 3))
    with pytest.raises(NotImplementedError, match="multiply-adds"):
        _Unknown().macs((8, 8, 3))
    with pytest.raises(NotImplementedError, match="window"):
        _Unknown().window()


def test_leaf_specs_count_themselves():
    conv = Conv(8, 3, stride=2, padding=1, name="c")
    assert conv.params((16, 16, 3)) == (3 * 3 * 3 * 8 + 8,) * 2
    assert conv.macs((16, 16, 3)) == 8 * 8 * 3 * 3 * 3 * 8
    assert conv.window() == Window(3, 2, 1, False)
    assert Dense(10).params((64,)) == (650, 650) and Dense(10).macs((64,)) == 640
    assert BatchNorm().params((4, 4, 6)) == (24, 12) and BatchNorm().window() is None
    assert Pool(3, stride=2, ceil=True).window() == Window(3, 2, 0, True)
    assert Pool(2).params((4, 4, 6)) == (0, 0)


@pytest.mark.parametrize(
    "block",
    [
        BasicBlock(16, stride=2, projection=True, name="b"),
        Inception(8, 4, 8, 2, 4, 4, name="i"),
    ],
)
def test_a_block_is_the_sum_of_its_parts(block: BlockSpec):
    shape = (9, 9, 6)
    leaves = geometry.trace([block], shape)
    assert block.params(shape) == (
        sum(x.params for x in leaves),
        sum(x.trainable_params for x in leaves),
    )
    assert block.macs(shape) == sum(x.macs for x in leaves) > 0
    assert block.output_shape(shape) == leaves[-1].output_shape


def test_a_block_becomes_keras_layers_only_through_blocks():
    from kcnn.models.blocks import Block, keras_layers

    block = BasicBlock(4, name="b")
    with pytest.raises(TypeError, match="keras_layers"):
        block.to_keras()
    (layer,) = keras_layers(block)
    assert isinstance(layer, Block) and layer.name == "b"
