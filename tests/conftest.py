"""Shared fixtures: model weights fetched through the code users run, and generated videos."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from benchmarks.synthetic import GroundTruth, build
from stream.vision import models

torch.set_num_threads(2)

# Real servers on loopback, started by fixtures: a mosquitto broker, a GStreamer RTSP server and
# PostgreSQL with pgvector.
pytest_plugins = ["tests.fixtures.mosquitto", "tests.fixtures.rtsp", "tests.fixtures.disk",
                  "tests.fixtures.postgres"]


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
