"""The one owner of the models and the device: detection, alignment, embedding and face quality
for batches of frames, under ``torch.inference_mode()``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from stream.types import Faces, FloatArray, Frame
from stream.vision.detect import MtcnnDetector
from stream.vision.embed import Embedder, load_embedder

_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class QualityGate:
    """What a face needs before it may create or confirm an identity."""

    min_score: float = 0.95
    min_face_px: int = 40  # shorter side of the box, in frame pixels
    min_sharpness: float = 12.0  # variance of the Laplacian of the grey chip (0..255)
    min_brightness: float = 45.0  # mean grey level of the chip's centre (0..255)


@dataclass(frozen=True)
class FrameFaces:
    """What the models found on one frame."""

    frame: Frame
    faces: Faces
    embeddings: FloatArray  # (N, D)
    sharpness: FloatArray  # (N,)
    brightness: FloatArray  # (N,)
    good: npt.NDArray[np.bool_]  # (N,) passed the quality gate
    quality: FloatArray  # (N,) for ranking thumbnails and exemplars


def brighten_dark_frames(images: torch.Tensor, *, dark: float = 120.0, target: float = 200.0,
                         max_gain: float = 4.0) -> torch.Tensor:
    """Scale each dark frame of ``images`` (B, 3, H, W, 0..255), one whose bright end (98th
    percentile of a pixel sample) is under ``dark``, so that its bright end reaches ``target``:
    MTCNN misses faces in dim scenes and the embedder drifts on them. Other frames are left
    as they are (brightening a normal frame would wash out its brightest faces)."""
    sample = images[:, :, ::8, ::8].mean(dim=1).flatten(1)
    bright_end = torch.quantile(sample, 0.98, dim=1)
    gain = (target / bright_end.clamp(min=1.0)).clamp(1.0, max_gain)
    gain = torch.where(bright_end < dark, gain, torch.ones_like(gain))
    if bool((gain <= 1.0).all()):
        return images
    return (images * gain.view(-1, 1, 1, 1)).clamp(0.0, 255.0)


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class VisionWorker:
    """Detects, embeds and grades the faces of batches of frames.

    Call it from one thread only: that thread owns the models and the device.
    """

    def __init__(self, *, embedder: str = "dlib-resnet", device: torch.device | None = None,
                 detect_width: int | None = 640, gate: QualityGate | None = None,
                 weights: Path | None = None, allow_download: bool = False) -> None:
        self.device = device or pick_device()
        self.gate = gate or QualityGate()
        self.embedder: Embedder = load_embedder(embedder, self.device, weights=weights,
                                                allow_download=allow_download)
        self.detector = MtcnnDetector(self.device, detect_width=detect_width,
                                      min_face_px=self.gate.min_face_px)
        self._laplacian = _LAPLACIAN.to(self.device)

    def process(self, frames: list[Frame]) -> list[FrameFaces]:
        """Faces, embeddings and quality for each frame (frames of one size per call)."""
        if not frames:
            return []
        with torch.inference_mode():
            images = torch.stack([torch.from_numpy(f.image) for f in frames]).to(self.device)
            images = brighten_dark_frames(images.permute(0, 3, 1, 2).float())
            found = self.detector.detect(images)
            chips = [self.embedder.chips(image, faces) if len(faces) else None
                     for image, faces in zip(images, found, strict=True)]
            present = [c for c in chips if c is not None]
            vectors = np.zeros((0, self.embedder.dim), np.float32)
            sharpness = np.zeros((0,), np.float32)
            brightness = np.zeros((0,), np.float32)
            if present:
                batch = torch.cat(present)
                vectors = self.embedder.embed_chips(batch)
                sharpness, brightness = self._grade(batch)
        results = []
        start = 0
        for frame, faces in zip(frames, found, strict=True):
            end = start + len(faces)
            results.append(self._frame_faces(frame, faces, vectors[start:end],
                                             sharpness[start:end], brightness[start:end]))
            start = end
        return results

    def _grade(self, chips: torch.Tensor) -> tuple[FloatArray, FloatArray]:
        grey = (chips * torch.tensor([0.299, 0.587, 0.114], device=chips.device)
                .view(1, 3, 1, 1)).sum(1, keepdim=True)
        size = grey.shape[-1]
        centre = grey[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4]
        sharp = F.conv2d(centre, self._laplacian).flatten(1).var(dim=1)
        bright = centre.flatten(1).mean(dim=1)
        return sharp.cpu().numpy().astype(np.float32), bright.cpu().numpy().astype(np.float32)

    def _frame_faces(self, frame: Frame, faces: Faces, vectors: FloatArray, sharpness: FloatArray,
                     brightness: FloatArray) -> FrameFaces:
        gate = self.gate
        boxes = faces.boxes
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        good = ((faces.scores >= gate.min_score) & (sides >= gate.min_face_px)
                & (sharpness >= gate.min_sharpness) & (brightness >= gate.min_brightness))
        quality = (faces.scores * np.minimum(1.0, sides / 120.0)
                   * np.minimum(1.0, sharpness / (4 * gate.min_sharpness))).astype(np.float32)
        return FrameFaces(frame, faces, vectors, sharpness, brightness, good, quality)
