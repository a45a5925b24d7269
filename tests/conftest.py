"""Shared fixtures: model weights fetched through the code users run, and generated videos."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest
import torch

from benchmarks.synthetic import GroundTruth, build
from stream.vision import models

torch.set_num_threads(2)


@pytest.fixture(scope="session")
def weights() -> None:
    """The offline models, fetched and verified as `facestream models fetch` does."""
    models.fetch("dlib-resnet")
    models.fetch("face-api-samples")


@pytest.fixture(scope="session")
def videos(tmp_path_factory: pytest.TempPathFactory, weights: None) -> Path:
    return tmp_path_factory.mktemp("videos")


@pytest.fixture(scope="session")
def demo_video(videos: Path) -> tuple[Path, GroundTruth]:
    """The 12 s demo scenario: three people, one coming back in another photo."""
    return build("demo", videos)


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
