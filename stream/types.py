"""Plain data passed between the stages: frozen dataclasses holding numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float32]
ImageArray = npt.NDArray[np.uint8]


@dataclass(frozen=True)
class Frame:
    """One decoded video frame: its 0-based index in decode order, its time and its RGB pixels."""

    index: int
    t: float
    image: ImageArray  # (H, W, 3) uint8, RGB
    # A smaller copy for the detector, made by the decoder's scaler when it knows the size
    detect_image: ImageArray | None = None
    captured_at: float | None = None  # wall clock (time.time()) when a live source decoded it

    @property
    def width(self) -> int:
        return int(self.image.shape[1])

    @property
    def height(self) -> int:
        return int(self.image.shape[0])


@dataclass(frozen=True)
class Faces:
    """The faces found in one frame, one array per field; never ``None`` for "no faces"."""

    boxes: FloatArray  # (N, 4) x1, y1, x2, y2 in frame pixels
    scores: FloatArray  # (N,)
    landmarks: FloatArray  # (N, 5, 2): left eye, right eye, nose, left mouth, right mouth

    def __post_init__(self) -> None:
        n = len(self.boxes)
        if self.boxes.shape != (n, 4) or self.scores.shape != (n,):
            raise ValueError(f"Faces needs boxes (N, 4) and scores (N,), got {self.boxes.shape}"
                             f" and {self.scores.shape}")
        if self.landmarks.shape != (n, 5, 2):
            raise ValueError(f"Faces needs landmarks (N, 5, 2), got {self.landmarks.shape}")

    @classmethod
    def empty(cls) -> Faces:
        """No faces."""
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32),
                   np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return len(self.boxes)

    def select(self, keep: npt.NDArray[np.bool_] | npt.NDArray[np.intp]) -> Faces:
        """The faces chosen by a boolean mask or an index array."""
        return Faces(self.boxes[keep], self.scores[keep], self.landmarks[keep])

    def scaled(self, factor: float) -> Faces:
        """The same faces with coordinates multiplied by ``factor`` (to map back to full size)."""
        return Faces(self.boxes * factor, self.scores, self.landmarks * factor)
