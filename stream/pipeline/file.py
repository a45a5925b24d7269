"""The file driver: every sampled frame of one video through the models and one lane, then the
report, built from the lane's ``person.left`` events (the appearance records live cameras
publish)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from stream.config import AnalyzeConfig
from stream.errors import DecodeError
from stream.identity.gallery import Gallery
from stream.identity.matcher import Identifier
from stream.identity.track import Track
from stream.pipeline.lane import IdentityAssigner, Lane, LaneStep, identifying_lane
from stream.pipeline.record import AppearanceRecorder
from stream.pipeline.refine import refine_video
from stream.report import (
    Appearance,
    Detection,
    Person,
    join_appearances,
    prepare_output,
    report_document,
    write_report,
)
from stream.sources import DecodeStats, hardware_decoding, prefetch, probe, sampled_frames
from stream.storage import open_gallery
from stream.types import Event, FloatArray, Frame, PersonLeft
from stream.vision.executor import FrameFaces, VisionWorker

log = logging.getLogger(__name__)
LANE = "file"  # the camera name of a file's lane


@dataclass(frozen=True)
class AnalyzeResult:
    out: Path
    persons: int
    frames_analyzed: int
    duration_s: float
    problems: list[str]


def batches(frames: Iterator[Frame], size: int) -> Iterator[list[Frame]]:
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


class _Faces:
    """Every face of the video, for ``detections.jsonl``. A face is labelled by the track that
    holds it at the end: tracks are decided after they begin, and a track split in two moves
    its later faces to the new one."""

    def __init__(self) -> None:
        self.rows: list[tuple[int, int, float, FloatArray, float]] = []  # frame, face, ...
        self._tracks: dict[int, Track] = {}

    def add(self, result: FrameFaces, step: LaneStep) -> None:
        frame, faces = result.frame, result.faces
        self.rows += [(frame.index, i, frame.t, faces.boxes[i], float(faces.scores[i]))
                      for i in range(len(faces))]
        self._tracks.update((track.number, track) for track in step.tracks + step.split)

    def _labels(self) -> dict[tuple[int, int], str | None]:
        """(frame, index of the face on it) -> the person, or ``None``."""
        labels: dict[tuple[int, int], str | None] = {}
        for track in self._tracks.values():
            person = Gallery.label(track.identity) if track.identity is not None else None
            for obs in track.observations:
                labels[obs.frame, obs.face] = person
        return labels

    def tracks(self) -> list[Track]:
        """Every track of the video, as it ended."""
        return list(self._tracks.values())

    def detections(self) -> Iterator[Detection]:
        labels = self._labels()
        for frame, face, t, box, score in self.rows:
            yield Detection(frame, t, (float(box[0]), float(box[1]), float(box[2]),
                                       float(box[3])), score, labels.get((frame, face)))

    def counts(self) -> Counter[str]:
        return Counter(person for person in self._labels().values() if person is not None)


def persons(left: list[PersonLeft], faces: _Faces, *, half_step: float, duration: float
            ) -> list[Person]:
    """The report's people from the appearances that ended. A sampled frame stands for half a
    sampling step either side of it, so each appearance is widened by that much. A person's
    name is the one their last appearance ended with."""
    counts = faces.counts()
    by_person: dict[str, list[PersonLeft]] = {}
    for event in left:
        by_person.setdefault(event.person, []).append(event)
    result = []
    for person, events in by_person.items():
        appearances = [Appearance(e.appearance, max(0.0, e.start_frame_time - half_step),
                                  min(duration, e.end_frame_time + half_step), e.thumbnail,
                                  e.quality) for e in events]
        best = max(events, key=lambda e: e.quality)
        result.append(Person(person, events[-1].name, join_appearances(appearances),
                             counts[person], best.thumbnail))
    return result


def analyze_video(video: Path, out: Path, config: AnalyzeConfig | None = None, *,
                  progress: Callable[[float, float | None], None] | None = None,
                  worker: VisionWorker | None = None,
                  assigner: IdentityAssigner | None = None) -> AnalyzeResult:
    """Analyse ``video`` and write the report into ``out``.

    ``progress`` is called with the video time reached and the duration the file's header
    gives (``None`` when it gives none). ``worker`` reuses loaded models;
    ``assigner`` replaces the product's identity assignment (benchmarks' baseline).
    """
    config = config or AnalyzeConfig()
    engine = config.engine
    info = probe(video)
    prepare_output(out)
    if worker is None:
        worker = VisionWorker.from_settings(engine)
    embedder = worker.embedder
    source = f"file:{video.resolve()}"
    with contextlib.ExitStack() as cleanup:
        recorder = None
        refining: tuple[Gallery, Identifier, int] | None = None
        if assigner is None:
            gallery = open_gallery(config.gallery.location if config.gallery else None,
                                   dim=embedder.dim, embedder=embedder.name,
                                   version=embedder.version)
            cleanup.callback(gallery.store.close)
            lane = identifying_lane(LANE, gallery, threshold=engine.threshold or
                                    embedder.threshold, events=config.events, source=source,
                                    engine=engine)
            if config.gallery is not None:
                recorder = AppearanceRecorder(gallery, wall_clock=False)
            if config.refine and isinstance(lane.assigner, Identifier):
                refining = (gallery, lane.assigner, gallery.highest)
                lane.undecided_faces = {}
        else:
            lane = Lane(LANE, assigner, config.events)
        log.info("analysing %s (%dx%d, %.2f fps) with %s on %s", video, info.width, info.height,
                 info.fps, embedder.name, worker.device)
        stats = DecodeStats()
        faces = _Faces()
        events: list[Event] = []
        frames = prefetch(sampled_frames(info, config.sample_fps, stats,
                                         detect_width=worker.detector.detect_width,
                                         hwaccel=hardware_decoding(engine.decoder,
                                                                   str(worker.device))))
        for batch in batches(frames, engine.max_batch_frames):
            for result in worker.process(batch, lane.skippable, [lane.sharpness] * len(batch)):
                step = lane.take(result, time.time())
                faces.add(result, step)
                events += step.events
            if progress is not None:
                progress(batch[-1].t, info.duration_s)
        events += lane.finish(time.time())
        if stats.frames_decoded == 0:
            raise DecodeError(f"no frame of {video} could be decoded; the file is damaged or not a "
                              "video")
        sample_step = 1.0 / min(config.sample_fps or info.fps, info.fps)
        duration = max(info.duration_s or 0.0, stats.last_t + 1.0 / info.fps)
        if stats.problems:
            duration = stats.last_t + 1.0 / info.fps
        left = [event for event in events if isinstance(event, PersonLeft)]
        if refining is not None:  # the report's second look; the events are what `run` said
            gallery, identifier, existing_up_to = refining
            left = refine_video(gallery, faces.tracks(), left, identifier.settings,
                                existing_up_to=existing_up_to,
                                left_after_s=config.events.left_after_s,
                                appearances_of=lambda tracks: lane.appearances_of(tracks,
                                                                                  time.time()))
        people = persons(left, faces, half_step=sample_step / 2, duration=duration)
        document = report_document(
            source=video, duration_s=duration, fps=info.fps, frames_decoded=stats.frames_decoded,
            frames_analyzed=stats.frames_sampled, embedder=(embedder.name, embedder.version),
            persons=people, problems=stats.problems)
        write_report(out, document, faces.detections(), people)
        if recorder is not None:
            recorder.record(source, left, widen_s=sample_step / 2, until=duration)
        return AnalyzeResult(out, len(people), stats.frames_sampled, duration, stats.problems)


__all__ = ["AnalyzeResult", "analyze_video", "batches"]
