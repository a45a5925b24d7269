"""The seed design, kept as the benchmarks' baseline: facenet-pytorch's own MTCNN at full
resolution with its default 20 px minimum face on every sampled frame, one embedding per face,
and the first known person under a fixed threshold (else a new one). No tracks, no quality gate,
no voting, no margin. It shares the product's embedder, so the comparison isolates the rest."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from stream.config import AnalyzeConfig, EngineSettings
from stream.identity.track import Observation, Track
from stream.pipeline.file import AnalyzeResult, analyze_video
from stream.types import Faces, FloatArray
from stream.vision.detect import MtcnnDetector
from stream.vision.executor import QualityGate, VisionWorker

# The single-face threshold calibrated on the sample photos (one woman at 0.28 from herself in
# two photos, different people at 0.377 and more); the product's 0.325 is for track templates.
SEED_THRESHOLD = 0.34


class FirstMatchAssigner:
    """Each face on its own: the first person whose one stored embedding is within
    ``threshold``, else a new person."""

    def __init__(self, threshold: float) -> None:
        self.threshold = threshold
        self.people: list[FloatArray] = []
        self._next_track = 1

    def observe(self, t: float, observations: list[Observation]) -> tuple[list[Track],
                                                                          list[Track]]:
        tracks = []
        for obs in observations:
            assert obs.embedding is not None  # skippable() asks for every face
            track = Track(self._next_track, [obs])
            self._next_track += 1
            for number, reference in enumerate(self.people, start=1):
                if float(np.linalg.norm(reference - obs.embedding)) < self.threshold:
                    track.identity = number
                    break
            else:
                self.people.append(obs.embedding)
                track.identity = len(self.people)
            tracks.append(track)
        return tracks, tracks

    @property
    def highest(self) -> int:
        return len(self.people)

    def finish(self) -> list[Track]:
        return []

    def active_tracks(self) -> list[Track]:
        return []  # every face is a track of its own, decided at once

    def split_tracks(self) -> list[Track]:
        return []

    def merged(self) -> list[tuple[int, int]]:
        return []

    def skippable(self, t: float, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        return np.zeros(len(boxes), np.bool_)  # the seed embedded every face


class SeedDetector(MtcnnDetector):
    """MTCNN through facenet-pytorch's ``detect_face``, as the seed called it."""

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        assert source_width is None  # the seed detected on full frames
        return self.detect_reference(images)


def baseline_worker() -> VisionWorker:
    """The seed's models: MTCNN's default 20 px minimum face, no downscaling, one thread
    running the networks (torch's own threads splitting each operation)."""
    worker = VisionWorker(embedder="dlib-resnet", detect_width=None,
                          gate=QualityGate(min_face_px=20), threads=1)
    worker.detector = SeedDetector(worker.device, detect_width=None, min_face_px=20,
                                   thresholds=(0.6, 0.7, 0.7))  # facenet-pytorch's defaults
    return worker


def analyze_baseline(video: Path, out: Path, worker: VisionWorker | None = None
                     ) -> AnalyzeResult:
    """Analyse ``video`` the seed's way, writing the same report format into ``out``."""
    worker = worker or baseline_worker()
    config = AnalyzeConfig(engine=EngineSettings(detect_width=None))
    return analyze_video(video, out, config, worker=worker,
                         assigner=FirstMatchAssigner(SEED_THRESHOLD))
