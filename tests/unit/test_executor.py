"""Frame preparation and the quality gate's relative sharpness."""

from __future__ import annotations

import numpy as np
import torch

from stream.vision.executor import SharpnessBaseline, apply_gain, exposure_gains


def test_dark_frames_are_brightened_and_normal_ones_kept() -> None:
    normal = torch.full((1, 3, 64, 64), 100.0)
    normal[..., :16, :] = 230.0  # a bright quarter: its 98th percentile is 230
    dim = normal * 0.3
    gains = exposure_gains(torch.cat([normal, dim]))
    assert gains[0] == 1.0 and 2.5 < gains[1] <= 4.0
    out = apply_gain(torch.cat([normal, dim]), gains)
    assert torch.equal(out[0], normal[0])
    assert out[1].max() <= 255.0 and out[1].mean() > 2.5 * dim.mean()


def test_sharpness_baseline_is_a_running_median() -> None:
    baseline = SharpnessBaseline(window=4)
    assert baseline.update(np.zeros(0, np.float32)) == 0.0
    assert baseline.update(np.array([1, 2, 3], np.float32)) == 2.0
    assert baseline.update(np.array([10, 10, 10], np.float32)) == 10.0  # window of 4: 3,10,10,10
