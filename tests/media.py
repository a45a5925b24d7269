"""Writing small test videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np


def write_video(path: Path, frames: list[np.ndarray], fps: int = 25) -> Path:
    """Encode RGB frames with libx264 into ``path`` (container from its suffix)."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        for image in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode())
    return path
