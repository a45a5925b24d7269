"""Batching sampled frames for the models."""

from __future__ import annotations

import numpy as np

from stream.pipeline.file import batches
from stream.types import Frame


def frame(index: int, height: int) -> Frame:
    return Frame(index, index / 10, np.zeros((height, 16, 3), np.uint8))


def test_batches_hold_one_frame_size_each() -> None:
    frames = [frame(0, 8), frame(1, 8), frame(2, 8), frame(3, 4), frame(4, 4), frame(5, 8)]
    sizes = [[f.index for f in batch] for batch in batches(iter(frames), 2)]
    assert sizes == [[0, 1], [2], [3, 4], [5]]
