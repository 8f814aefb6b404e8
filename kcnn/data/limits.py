"""What one batch of input may take, checked from the settings before anything is allocated
(and before numpy or TensorFlow is imported: `kcnn.engine.config` checks it while validating)."""

from __future__ import annotations

from kcnn import defaults
from kcnn.errors import KcnnError


def check_batch_memory(batch_size: int, height: int, width: int, channels: int) -> None:
    """Refuse a batch whose float32 input alone would not fit, before anything is allocated."""
    size = batch_size * height * width * channels * 4
    if size > defaults.INPUT_BATCH_BYTES_MAX:
        limit = defaults.INPUT_BATCH_BYTES_MAX
        raise KcnnError(
            f"one batch of {batch_size} images of {height}×{width}×{channels} takes "
            f"{size / 1024**3:.1f} GB as float32, over the {limit / 1024**3:.0f} GB limit: "
            "lower --batch-size or --image-size"
        )
