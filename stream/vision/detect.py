"""Face detection behind a typed protocol: MTCNN from facenet-pytorch, batched over frames.

facenet-pytorch returns ``None``, object arrays and shapes that depend on the input; this adapter
always returns one :class:`~stream.types.Faces` per image, with float32 arrays.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from stream.types import Faces


class FaceDetector(Protocol):
    """Finds faces in a batch of same-sized images."""

    def detect(self, images: torch.Tensor) -> list[Faces]:
        """One :class:`Faces` per image of ``images`` (B, 3, H, W) float 0..255, in its pixels."""
        ...


class MtcnnDetector:
    """MTCNN (P-, R-, O-Net) with weights shipped in the facenet-pytorch wheel.

    ``detect_width`` downscales each batch before detection (boxes and landmarks are mapped back);
    ``min_face_px`` is the smallest face to look for, in pixels of the full-size frame.
    """

    def __init__(self, device: torch.device, *, detect_width: int | None = 640,
                 min_face_px: int = 40, thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
                 ) -> None:
        from facenet_pytorch import MTCNN

        if detect_width is not None and detect_width < 64:
            raise ValueError(f"detect_width must be at least 64 pixels, got {detect_width}")
        if min_face_px < 12:
            raise ValueError(f"min_face_px must be at least 12 pixels, got {min_face_px}")
        self.device = device
        self.detect_width = detect_width
        self.min_face_px = min_face_px
        self.thresholds = list(thresholds)
        self.mtcnn = MTCNN(keep_all=True, device=device).eval()

    def detect(self, images: torch.Tensor) -> list[Faces]:
        from facenet_pytorch.models.utils.detect_face import detect_face

        if images.shape[0] == 0:
            return []
        width = images.shape[3]
        scale = 1.0
        if self.detect_width is not None and width > self.detect_width:
            scale = width / self.detect_width
            height = round(images.shape[2] / scale)
            images = F.interpolate(images, size=(height, self.detect_width), mode="bilinear",
                                   antialias=True, align_corners=False)
        # MTCNN's smallest face is in detection pixels; never below its 12 px receptive field.
        min_size = max(12.0, self.min_face_px / scale)
        with torch.inference_mode():
            batch_boxes, batch_points = detect_face(
                images.permute(0, 2, 3, 1), min_size, self.mtcnn.pnet, self.mtcnn.rnet,
                self.mtcnn.onet, self.thresholds, self.mtcnn.factor, self.device)
        result = []
        for boxes, points in zip(batch_boxes, batch_points, strict=True):
            found = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            landmarks = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
            faces = Faces(np.ascontiguousarray(found[:, :4]), np.ascontiguousarray(found[:, 4]),
                          landmarks)
            result.append(faces.scaled(scale) if scale != 1.0 else faces)
        return result
