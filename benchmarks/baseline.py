"""The seed design, kept as the benchmarks' baseline: MTCNN at full resolution on every sampled
frame, one embedding per face, and the first known person under a fixed threshold (else a new
one). No tracks, no quality gate, no voting, no margin."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from stream.analyze import AnalyzeOptions, AnalyzeResult, analyze_video
from stream.identity.track import Observation, Track
from stream.types import FloatArray
from stream.vision.executor import QualityGate, VisionWorker


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

    def finish(self) -> list[Track]:
        return []


def baseline_worker() -> VisionWorker:
    """The seed's models: MTCNN's default 20 px minimum face, no downscaling."""
    return VisionWorker(embedder="dlib-resnet", detect_width=None,
                        gate=QualityGate(min_face_px=20))


def analyze_baseline(video: Path, out: Path, worker: VisionWorker | None = None
                     ) -> AnalyzeResult:
    """Analyse ``video`` the seed's way, writing the same report format into ``out``."""
    worker = worker or baseline_worker()
    return analyze_video(video, out, AnalyzeOptions(detect_width=None), worker=worker,
                         assigner=FirstMatchAssigner(worker.embedder.threshold))
