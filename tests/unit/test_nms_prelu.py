"""Two exact rewrites of the CPU path: the detector's NMS in numpy (torchvision's kept boxes
without importing torchvision) and MTCNN's PReLUs as element-wise operations for the export."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torchvision.ops import batched_nms as torchvision_nms

from stream.vision.detect import _greedy_nms, batched_nms
from stream.vision.export import ElementwisePReLU, elementwise_prelus


@st.composite
def scenes(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Boxes (many overlapping, some identical), distinct scores, groups and a threshold."""
    n = draw(st.integers(0, 600))
    seed = draw(st.integers(0, 2**31 - 1))
    generator = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=generator) * draw(st.sampled_from([20.0, 200.0]))
    size = 4 + torch.rand(n, 2, generator=generator) * 60
    boxes = torch.cat((corner, corner + size), dim=1)
    if n > 1:  # duplicates: the IoU of a box with its copy is exactly 1
        boxes[n // 2] = boxes[0]
    scores = torch.randperm(n, generator=generator).float() / max(n, 1)
    # up to 60 groups: a batch of frames' pyramid levels
    groups = torch.randint(0, draw(st.sampled_from([1, 2, 4, 60])), (n,), generator=generator)
    return boxes, scores, groups, draw(st.sampled_from([0.0, 0.3, 0.5, 0.7]))


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_the_cpu_nms_keeps_what_torchvision_keeps_best_first(
        scene: tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]) -> None:
    boxes, scores, groups, threshold = scene
    kept = batched_nms(boxes, scores, groups, threshold)
    assert kept.dtype == torch.int64
    assert kept.tolist() == torchvision_nms(boxes, scores, groups, threshold).tolist()


def test_the_cpu_nms_works_through_more_boxes_than_one_block() -> None:
    # 1,000 copies of one box in one group: the first survives, every later block is emptied
    boxes = torch.tensor([[10.0, 10.0, 50.0, 50.0]]).repeat(1000, 1)
    scores = torch.linspace(1.0, 0.001, 1000)
    assert batched_nms(boxes, scores, torch.zeros(1000, dtype=torch.int64), 0.5).tolist() == [0]


def test_facenets_last_nms_measures_overlap_on_the_smaller_box() -> None:
    # a face's box inside a larger, better one: IoU 0.1, but all of the smaller one is covered
    boxes = np.array([[0, 0, 99, 99], [10, 10, 40, 40], [200, 0, 260, 60]], np.float32)
    scores = np.array([0.99, 0.98, 0.97], np.float32)
    groups = np.zeros(3, np.int64)
    assert _greedy_nms(boxes, scores, groups, 0.7).tolist() == [0, 1, 2]
    assert _greedy_nms(boxes, scores, groups, 0.7, facenet_min=True).tolist() == [0, 2]


def test_the_elementwise_prelu_gives_the_same_numbers_bit_for_bit() -> None:
    prelu = nn.PReLU(4)
    with torch.no_grad():  # slopes over 1 and under 0 as well: MTCNN has both
        prelu.weight.copy_(torch.tensor([0.25, -1.3, 1.25, 0.0]))
    x = torch.randn(3, 4, 9, 7) * 10
    x[0, :, 0, 0] = 0.0
    assert torch.equal(ElementwisePReLU(prelu)(x), prelu(x))
    flat = nn.PReLU(4)
    assert torch.equal(ElementwisePReLU(flat)(x[:, :, 0, 0]), flat(x[:, :, 0, 0]))


def test_every_prelu_of_a_network_is_replaced_in_a_copy() -> None:
    network = nn.Sequential(nn.Conv2d(3, 4, 3), nn.PReLU(4),
                            nn.Sequential(nn.Conv2d(4, 2, 1), nn.PReLU(2)))
    rewritten = elementwise_prelus(network).eval()
    assert not any(isinstance(m, nn.PReLU) for m in rewritten.modules())
    assert sum(isinstance(m, nn.PReLU) for m in network.modules()) == 2  # the original stays
    x = torch.from_numpy(np.random.default_rng(0).normal(size=(2, 3, 12, 12)).astype(np.float32))
    with torch.no_grad():
        assert torch.equal(rewritten(x), network.eval()(x))
