"""The file pipeline: decode → detect → embed → track → identify → report, for one video."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream.errors import DecodeError
from stream.identity.gallery import Gallery, open_gallery
from stream.identity.matcher import Identifier, MatchSettings
from stream.identity.track import Observation, Track
from stream.imaging import face_crop, jpeg_bytes
from stream.report import (
    Detection,
    Person,
    merge_spans,
    prepare_output,
    report_document,
    write_report,
)
from stream.sources import DecodeStats, prefetch, probe, sampled_frames
from stream.types import Faces, FloatArray, Frame, ImageArray
from stream.vision.embed import default_embedder_name
from stream.vision.executor import FrameFaces, SharpnessBaseline, VisionWorker, pick_device

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnalyzeOptions:
    """Settings of ``facestream analyze``; the defaults are the benchmarked ones."""

    sample_fps: float | None = 10.0
    detect_width: int | None = 640
    embedder: str | None = None  # None: facenet-vggface2 when its weights are cached, else dlib
    weights: Path | None = None
    allow_download: bool = False
    device: str = "auto"
    batch_frames: int = 4
    threshold: float | None = None  # None: the embedder's calibrated threshold
    appearance_gap_s: float = 1.5  # absences up to this long do not split an appearance
    gallery: Path | None = None  # a persistent gallery: people keep their IDs across runs

    def __post_init__(self) -> None:
        if self.sample_fps is not None and not 0 < self.sample_fps <= 120:
            raise ValueError(f"--sample-fps must be in (0, 120], got {self.sample_fps}")
        if self.batch_frames < 1:
            raise ValueError(f"batch_frames must be at least 1, got {self.batch_frames}")


@dataclass(frozen=True)
class AnalyzeResult:
    out: Path
    persons: int
    frames_analyzed: int
    duration_s: float
    problems: list[str]


class IdentityAssigner(Protocol):
    """What the pipeline needs of identity assignment (the product's :class:`Identifier`, or a
    benchmark's baseline)."""

    def observe(self, t: float, observations: list[Observation]) -> tuple[list[Track],
                                                                          list[Track]]: ...

    def finish(self) -> list[Track]: ...

    def skippable(self, t: float, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        """Faces whose embedding the assigner does not need (they continue a known track)."""
        ...


def _batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
    """Runs of up to ``size`` frames of one frame size (a stream may change size midway)."""
    batch: list[Frame] = []
    for frame in frames:
        if batch and frame.image.shape != batch[0].image.shape:
            yield batch
            batch = []
        batch.append(frame)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Collector:
    """Keeps what the report needs while frames stream past: detections, tracks, thumbnails."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, float, np.ndarray, float, Track]] = []
        self.tracks: dict[int, Track] = {}
        self.best: dict[int, tuple[float, ImageArray]] = {}

    def add(self, result: FrameFaces, tracks: list[Track]) -> None:
        for i, track in enumerate(tracks):
            self.rows.append((result.frame.index, result.frame.t, result.faces.boxes[i],
                              float(result.faces.scores[i]), track))
            self.tracks[track.number] = track
            quality = float(result.quality[i]) + (1.0 if result.good[i] else 0.0)
            if quality > self.best.get(track.number, (-1.0, None))[0]:
                self.best[track.number] = (quality, face_crop(result.frame.image,
                                                              result.faces.boxes[i]))

    def face_jpeg(self, track: Track) -> bytes | None:
        """The track's best face so far as JPEG, kept with the exemplars it gives."""
        best = self.best.get(track.number)
        return jpeg_bytes(best[1]) if best is not None else None

    def persons(self, half_step: float, gap_s: float, duration: float) -> list[Person]:
        by_identity: dict[int, list[Track]] = {}
        for track in self.tracks.values():
            if track.identity is not None:
                by_identity.setdefault(track.identity, []).append(track)
        persons = []
        for identity, tracks in by_identity.items():
            spans = [(max(0.0, t.observations[0].t - half_step),
                      min(duration, t.last.t + half_step)) for t in tracks]
            best = max(tracks, key=lambda t: self.best[t.number][0])
            persons.append(Person(Gallery.label(identity), merge_spans(spans, gap_s),
                                  sum(len(t.observations) for t in tracks),
                                  self.best[best.number][1]))
        return persons

    def detections(self) -> Iterator[Detection]:
        for frame, t, box, score, track in self.rows:
            person = Gallery.label(track.identity) if track.identity is not None else None
            yield Detection(frame, t, (float(box[0]), float(box[1]), float(box[2]),
                                       float(box[3])), score, person)


def observations(result: FrameFaces) -> list[Observation]:
    """The faces the models found on one frame, as the identity stage takes them."""
    return [Observation(result.frame.index, result.frame.t, result.faces.boxes[i],
                        float(result.faces.scores[i]),
                        result.embeddings[i] if result.embedded[i] else None,
                        float(result.quality[i]), bool(result.good[i]))
            for i in range(len(result.faces))]


def _log_decisions(decided: list[Track], known: set[int]) -> None:
    """Say who was just recognised: a new person, or one seen before coming back."""
    for track in decided:
        if track.identity is None:
            continue
        label = Gallery.label(track.identity)
        start = track.observations[0].t
        if track.identity in known:
            log.info("%s is back at %.1f s", label, start)
        else:
            known.add(track.identity)
            log.info("%s: new person at %.1f s", label, start)


def analyze_video(video: Path, out: Path, options: AnalyzeOptions | None = None, *,
                  progress: Callable[[float, float | None], None] | None = None,
                  worker: VisionWorker | None = None,
                  assigner: IdentityAssigner | None = None) -> AnalyzeResult:
    """Analyse ``video`` and write the report into ``out``.

    ``progress`` is called with the video time reached and the duration the file's header
    gives (``None`` when it gives none). ``worker`` reuses loaded models;
    ``assigner`` replaces the product's identity assignment (benchmarks' baseline).
    """
    options = options or AnalyzeOptions()
    info = probe(video)
    prepare_output(out)
    if worker is None:
        worker = VisionWorker(embedder=options.embedder or default_embedder_name(),
                              device=pick_device(options.device),
                              detect_width=options.detect_width, weights=options.weights,
                              allow_download=options.allow_download)
    embedder = worker.embedder
    collector = _Collector()
    gallery = None
    if assigner is None:
        settings = MatchSettings(threshold=options.threshold or embedder.threshold)
        gallery = open_gallery(options.gallery, dim=embedder.dim, embedder=embedder.name,
                               version=embedder.version)
        assigner = Identifier(gallery, settings, source=f"file:{video.resolve()}",
                              face_of=collector.face_jpeg)
    with contextlib.ExitStack() as cleanup:
        if gallery is not None:
            cleanup.callback(gallery.store.close)
        log.info("analysing %s (%dx%d, %.2f fps) with %s on %s", video, info.width, info.height,
                 info.fps, embedder.name, worker.device)
        stats = DecodeStats()
        known: set[int] = set()
        frames = prefetch(sampled_frames(info, options.sample_fps, stats,
                                         detect_width=worker.detector.detect_width))
        def skip(frame: Frame, faces: Faces) -> npt.NDArray[np.bool_]:
            return assigner.skippable(frame.t, faces.boxes)

        sharpness = SharpnessBaseline()
        for batch in _batches(frames, options.batch_frames):
            for result in worker.process(batch, skip, [sharpness] * len(batch)):
                tracks, decided = assigner.observe(result.frame.t, observations(result))
                collector.add(result, tracks)
                _log_decisions(decided, known)
            if progress is not None:
                progress(batch[-1].t, info.duration_s)
        _log_decisions(assigner.finish(), known)
        if stats.frames_decoded == 0:
            raise DecodeError(f"no frame of {video} could be decoded; the file is damaged or not a "
                              "video")
        step = 1.0 / min(options.sample_fps or info.fps, info.fps)
        duration = max(info.duration_s or 0.0, stats.last_t + 1.0 / info.fps)
        if stats.problems:
            duration = stats.last_t + 1.0 / info.fps
        persons = collector.persons(step / 2, options.appearance_gap_s, duration)
        document = report_document(
            source=video, duration_s=duration, fps=info.fps, frames_decoded=stats.frames_decoded,
            frames_analyzed=stats.frames_sampled, embedder=(embedder.name, embedder.version),
            persons=persons, problems=stats.problems)
        write_report(out, document, collector.detections(), persons)
        if gallery is not None and options.gallery is not None:
            with gallery.store.transaction():
                for person in persons:
                    for start, end in person.appearances:
                        gallery.store.add_appearance(Gallery.number(person.id),
                                                     f"file:{video.resolve()}", start, end)
        return AnalyzeResult(out, len(persons), stats.frames_sampled, duration, stats.problems)


__all__ = ["AnalyzeOptions", "AnalyzeResult", "IdentityAssigner", "analyze_video", "observations"]
