"""Face embedders behind one protocol: alignment of faces to chips, then a network.

- ``dlib-resnet``: a PyTorch port of dlib's 128-d ResNet face descriptor, weights from the npm
  package ``@vladmandic/face-api`` (TensorFlow.js layout, uint8-quantised), faces aligned by a
  similarity transform of MTCNN's five landmarks onto a 150x150 template.
- ``facenet-vggface2`` / ``facenet-casia``: facenet-pytorch's InceptionResnetV1 (512-d) on
  160x160 box crops, as it was trained.

Every embedder returns L2-normalised vectors, so distances are comparable within one embedder;
``threshold`` is the calibrated Euclidean distance below which two faces are the same person.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.errors import ModelError
from stream.types import Faces, FloatArray
from stream.vision import models

# dlib's mean face (with its 0.25 padding) in a 150x150 chip: eyes, nose tip, mouth corners.
DLIB_TEMPLATE = np.array([[47.6, 46.6], [100.5, 46.6], [74.0, 76.6], [50.4, 103.0],
                          [97.6, 103.0]], np.float32)
DLIB_MEAN_RGB = (122.782, 117.001, 104.298)


class Embedder(Protocol):
    """Turns the faces of one frame into L2-normalised vectors."""

    name: str
    version: str
    dim: int
    threshold: float

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """The aligned float face chips (N, 3, S, S) of ``faces`` in ``image`` (3, H, W), 0..255,
        uint8 or float."""
        ...

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors (N, dim) for chips from :meth:`chips` (any number of frames at once)."""
        ...


def embed(embedder: Embedder, image: torch.Tensor, faces: Faces) -> FloatArray:
    """Unit vectors (N, dim) for ``faces`` in ``image``, a (3, H, W) float tensor in 0..255."""
    if len(faces) == 0:
        return np.zeros((0, embedder.dim), np.float32)
    return embedder.embed_chips(embedder.chips(image, faces))


def similarity_transform(src: FloatArray, dst: FloatArray) -> FloatArray:
    """The 2x3 similarity (rotation, uniform scale, shift) mapping ``src`` points onto ``dst``
    in the least-squares sense (Umeyama, without reflection)."""
    src_mean, dst_mean = src.mean(0), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = dst_c.T @ src_c / len(src)
    u, s, vt = np.linalg.svd(cov)
    d = np.ones(2, np.float64)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[1] = -1
    rotation = u @ np.diag(d) @ vt
    scale = float((s * d).sum() / max(src_c.var(0).sum(), 1e-12))
    matrix = np.zeros((2, 3), np.float32)
    matrix[:, :2] = scale * rotation
    matrix[:, 2] = dst_mean - scale * rotation @ src_mean
    return matrix


def warp(image: torch.Tensor, chip_to_image: torch.Tensor, size: int) -> torch.Tensor:
    """Sample ``size``x``size`` float chips (N, 3, S, S) from ``image`` (3, H, W, any dtype);
    ``chip_to_image`` (N, 2, 3) maps chip pixel centres to image pixel coordinates. Pixels
    outside the image are zero. Only the region under each chip is converted to float, so a
    uint8 frame is never copied whole."""
    height, width = image.shape[1:]
    axis = torch.arange(size, dtype=torch.float32, device=image.device)
    grid_y, grid_x = torch.meshgrid(axis, axis, indexing="ij")
    chip = torch.stack([grid_x, grid_y, torch.ones_like(grid_x)], -1).reshape(-1, 3)
    points = chip @ chip_to_image.to(image.device).transpose(1, 2)  # (N, S*S, 2) image pixels
    lows = (points.amin(dim=1).floor() - 1).tolist()
    highs = (points.amax(dim=1).ceil() + 2).tolist()
    chips = []
    for face, (low, high) in enumerate(zip(lows, highs, strict=True)):
        x0, y0 = min(max(int(low[0]), 0), width), min(max(int(low[1]), 0), height)
        x1, y1 = min(max(int(high[0]), 0), width), min(max(int(high[1]), 0), height)
        if x1 - x0 < 2 or y1 - y0 < 2:
            chips.append(torch.zeros((3, size, size), device=image.device))
            continue
        region = image[:, y0:y1, x0:x1].float()
        scale = torch.tensor([2.0 / (x1 - x0), 2.0 / (y1 - y0)], device=image.device)
        offset = torch.tensor([x0, y0], dtype=torch.float32, device=image.device)
        grid = (points[face] - offset + 0.5) * scale - 1.0
        chips.append(F.grid_sample(region[None], grid.view(1, size, size, 2), mode="bilinear",
                                   padding_mode="zeros", align_corners=False)[0])
    if not chips:
        return torch.zeros((0, 3, size, size), device=image.device)
    return torch.stack(chips)


def landmark_alignment(faces: Faces, template: FloatArray) -> torch.Tensor:
    """Chip-to-image affine matrices (N, 2, 3) that put each face's landmarks on ``template``."""
    matrices = []
    for points in faces.landmarks:
        to_chip = similarity_transform(points.astype(np.float64), template.astype(np.float64))
        full = np.vstack([to_chip, [0.0, 0.0, 1.0]])
        matrices.append(np.linalg.inv(full)[:2])
    return torch.from_numpy(np.asarray(matrices, np.float32).reshape(-1, 2, 3))


def box_alignment(faces: Faces, size: int) -> torch.Tensor:
    """Chip-to-image affine matrices (N, 2, 3) that stretch each box onto a square chip."""
    boxes = faces.boxes.astype(np.float32)
    matrices = np.zeros((len(boxes), 2, 3), np.float32)
    matrices[:, 0, 0] = (boxes[:, 2] - boxes[:, 0]) / size
    matrices[:, 1, 1] = (boxes[:, 3] - boxes[:, 1]) / size
    matrices[:, 0, 2] = boxes[:, 0]
    matrices[:, 1, 2] = boxes[:, 1]
    return torch.from_numpy(matrices)


def _normalised(vectors: torch.Tensor) -> FloatArray:
    out: FloatArray = F.normalize(vectors.float(), dim=1).cpu().numpy().astype(np.float32)
    return out


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


class DlibResNetEmbedder:
    """The offline default: dlib's ResNet on landmark-aligned 150x150 chips."""

    name = "dlib-resnet"
    version = "face-api-1.7.15/dlib_face_recognition_resnet_model_v1"
    dim = 128
    threshold = 0.325  # between track templates (unit means); see README "Calibration"
    chip_size = 150

    def __init__(self, device: torch.device, weights: Path | None = None) -> None:
        # From the npm registry when not cached: a registry, not a download site.
        directory = models.fetch(self.name, source=weights)
        self.device = device
        self.network = DlibResNet()
        self.network.load_face_api(directory)
        # channels-last runs this ResNet about 1.6x faster on CPU, and suits CUDA's convolutions
        self.network.eval().to(device)
        self.network.to(memory_format=torch.channels_last)

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        matrices = landmark_alignment(faces, DLIB_TEMPLATE).to(image.device)
        return warp(image, matrices, self.chip_size)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        with torch.inference_mode():
            return _normalised(self.network(chips.contiguous(memory_format=torch.channels_last)))


class FacenetEmbedder:
    """facenet-pytorch's InceptionResnetV1 on 160x160 MTCNN box crops."""

    dim = 512
    threshold = 0.9  # Euclidean distance between unit vectors, as facenet-pytorch's examples
    chip_size = 160

    def __init__(self, name: str, device: torch.device, weights: Path | None = None,
                 allow_download: bool = False) -> None:
        from facenet_pytorch import InceptionResnetV1

        model_dir = models.fetch(name, source=weights, allow_download=allow_download)
        file_name = models.spec(name).files[0].name
        self.name = name
        self.version = f"facenet-pytorch-2.6.0/{file_name}"
        self.device = device
        self.network = InceptionResnetV1(pretrained=None, classify=False)
        try:
            state = torch.load(model_dir / file_name, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelError(f"{model_dir / file_name} is not a torch state dict: {error}"
                             ) from error
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        missing, unexpected = self.network.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"{file_name} does not fit InceptionResnetV1 (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        self.network.eval().to(device)

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        return warp(image, box_alignment(faces, self.chip_size).to(image.device), self.chip_size)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        with torch.inference_mode():
            return _normalised(self.network((chips - 127.5) / 128.0))




def load_embedder(name: str, device: torch.device, *, weights: Path | None = None,
                  allow_download: bool = False) -> Embedder:
    """The embedder called ``name`` on ``device``, its weights verified once, from ``weights``,
    the cache, or (dlib-resnet) the npm registry."""
    if name == "dlib-resnet":
        return DlibResNetEmbedder(device, weights)
    if name in ("facenet-vggface2", "facenet-casia"):
        return FacenetEmbedder(name, device, weights, allow_download)
    raise ModelError(f"unknown embedder {name!r}; choose one of {', '.join(models.EMBEDDERS)}")


def default_embedder_name() -> str:
    """facenet-vggface2 when its weights are in the cache, else the offline dlib-resnet. Only
    presence is checked here: loading verifies the hash, once."""
    facenet = models.spec("facenet-vggface2")
    present = facenet.path(facenet.files[0].name).is_file()
    return "facenet-vggface2" if present else "dlib-resnet"
