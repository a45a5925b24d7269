"""Pixels in and out: face crops for thumbnails, and JPEG."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from stream.types import ImageArray


def face_crop(image: ImageArray, box: np.ndarray, margin: float = 0.35) -> ImageArray:
    """A square crop around ``box`` with ``margin`` of its size on every side, for thumbnails."""
    x1, y1, x2, y2 = (float(v) for v in box)
    side = max(x2 - x1, y2 - y1) * (1 + 2 * margin)
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    height, width = image.shape[:2]
    left, top = max(0, int(cx - side / 2)), max(0, int(cy - side / 2))
    right, bottom = min(width, int(cx + side / 2)), min(height, int(cy + side / 2))
    crop: ImageArray = np.ascontiguousarray(image[top:bottom, left:right])
    return crop


def jpeg_bytes(image: ImageArray, quality: int = 90) -> bytes:
    """``image`` (H, W, 3) RGB encoded as JPEG."""
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


def square_jpeg(crop: ImageArray, side: int, quality: int = 85) -> bytes:
    """``crop`` scaled to ``side`` x ``side`` and encoded as JPEG (event thumbnails)."""
    image = Image.fromarray(crop).resize((side, side), Image.Resampling.BILINEAR)
    return jpeg_bytes(np.asarray(image, np.uint8), quality=quality)
