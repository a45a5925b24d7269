"""dlib's 128-d ResNet face descriptor, ported to PyTorch.

Weights from the npm package ``@vladmandic/face-api`` (TensorFlow.js layout, uint8-quantised);
faces aligned by a similarity transform of MTCNN's five landmarks onto a 150x150 template.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.errors import ModelError
from stream.vision.embed import LandmarkEmbedder

# dlib's mean face (with its 0.25 padding) in a 150x150 chip: eyes, nose tip, mouth corners.
DLIB_TEMPLATE = np.array([[47.6, 46.6], [100.5, 46.6], [74.0, 76.6], [50.4, 103.0],
                          [97.6, 103.0]], np.float32)
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)

class _ConvAffine(nn.Module):
    """Convolution with bias, then dlib's per-channel affine ("scale") layer."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, padding: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=padding)
        self.scale_weight = nn.Parameter(torch.ones(out_ch))
        self.scale_bias = nn.Parameter(torch.zeros(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x)
        return out * self.scale_weight[:, None, None] + self.scale_bias[:, None, None]


class _Residual(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, down: bool) -> None:
        super().__init__()
        self.down = down
        self.conv1 = _ConvAffine(in_ch, out_ch, 3, 2 if down else 1, 0 if down else 1)
        self.conv2 = _ConvAffine(out_ch, out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv2(F.relu(self.conv1(x)))
        shortcut = x
        if self.down:
            shortcut = F.avg_pool2d(x, 2, 2)
            # TF "valid" convs can come out one row/column short of the pooled shortcut.
            pad_h = shortcut.shape[2] - out.shape[2]
            pad_w = shortcut.shape[3] - out.shape[3]
            out = F.pad(out, (0, pad_w, 0, pad_h))
            extra = out.shape[1] - shortcut.shape[1]
            shortcut = F.pad(shortcut, (0, 0, 0, 0, 0, extra))
        return F.relu(out + shortcut)


_DLIB_BLOCKS: tuple[tuple[str, int, int, bool], ...] = (
    ("conv32_1", 32, 32, False), ("conv32_2", 32, 32, False), ("conv32_3", 32, 32, False),
    ("conv64_down", 32, 64, True), ("conv64_1", 64, 64, False), ("conv64_2", 64, 64, False),
    ("conv64_3", 64, 64, False), ("conv128_down", 64, 128, True),
    ("conv128_1", 128, 128, False), ("conv128_2", 128, 128, False),
    ("conv256_down", 128, 256, True), ("conv256_1", 256, 256, False),
    ("conv256_2", 256, 256, False), ("conv256_down_out", 256, 256, True),
)


class DlibResNet(nn.Module):
    """dlib_face_recognition_resnet_model_v1 as a torch module; input (N, 3, 150, 150) in 0..255."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = _ConvAffine(3, 32, 7, 2, 0)
        self.blocks = nn.ModuleDict({name: _Residual(i, o, d) for name, i, o, d in _DLIB_BLOCKS})
        self.fc = nn.Parameter(torch.zeros(256, 128))
        self.mean_rgb: torch.Tensor
        self.register_buffer("mean_rgb", torch.tensor(DLIB_MEAN_RGB).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = (x - self.mean_rgb) / 256.0
        out = F.max_pool2d(F.relu(self.stem(out)), 3, 2)
        for block in self.blocks.values():
            out = block(out)
        return out.mean(dim=(2, 3)) @ self.fc

    def load_face_api(self, directory: Path) -> None:
        """Load the uint8-quantised TensorFlow.js weights of face-api's recognition model."""
        manifest = json.loads((directory / "face_recognition_model-weights_manifest.json")
                              .read_text())
        raw = (directory / "face_recognition_model.bin").read_bytes()
        tensors: dict[str, torch.Tensor] = {}
        offset = 0
        for entry in manifest[0]["weights"]:
            count = int(np.prod(entry["shape"]))
            quant = entry.get("quantization")
            if quant is not None:
                data = np.frombuffer(raw, np.uint8, count, offset).astype(np.float32)
                values = data * quant["scale"] + quant["min"]
                offset += count
            else:
                values = np.frombuffer(raw, np.float32, count, offset).copy()
                offset += 4 * count
            tensors[entry["name"]] = torch.from_numpy(values.reshape(entry["shape"]))
        if offset != len(raw):
            raise ModelError(f"face-api weights: {len(raw) - offset} bytes left unread; "
                             "the file does not match its manifest")

        def load(layer: _ConvAffine, prefix: str) -> None:
            layer.conv.weight.data = tensors[f"{prefix}/conv/filters"].permute(3, 2, 0, 1)
            assert layer.conv.bias is not None
            layer.conv.bias.data = tensors[f"{prefix}/conv/bias"]
            layer.scale_weight.data = tensors[f"{prefix}/scale/weights"]
            layer.scale_bias.data = tensors[f"{prefix}/scale/biases"]

        load(self.stem, "conv32_down")
        for name, block in self.blocks.items():
            assert isinstance(block, _Residual)
            load(block.conv1, f"{name}/conv1")
            load(block.conv2, f"{name}/conv2")
        self.fc.data = tensors["fc"]


class DlibResNetEmbedder(LandmarkEmbedder):
    """The offline default: dlib's ResNet on landmark-aligned 150x150 chips."""

    chip_size = 150
    template = DLIB_TEMPLATE
    # channels-last runs this ResNet about 1.6x faster on CPU, and suits CUDA's convolutions
    channels_last = True

    def load_network(self, directory: Path) -> nn.Module:
        """dlib's ResNet with face-api's weights."""
        network = DlibResNet()
        network.load_face_api(directory)
        return network
