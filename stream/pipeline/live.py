"""The model thread of the live service: the newest frame of each camera, batched through the
models together, identities from one gallery shared by all cameras, and appearance events.

The thread owns the models, the device, the trackers and the gallery; nothing else touches them.
It never waits on a consumer: events leave through ``emit``, which must not block.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

from stream.pipeline.file import observations
from stream.config import EngineSettings, EventSettings
from stream.pipeline.appearances import Appearances, Event, Sighting
from stream.identity.gallery import Gallery
from stream.identity.matcher import Identifier, MatchSettings, template
from stream.identity.store import GalleryError
from stream.identity.track import Track
from stream.imaging import face_crop, jpeg_bytes
from stream.service.metrics import Metrics
from stream.sources import Camera
from stream.types import Frame, ImageArray
from stream.vision.executor import FrameFaces, SharpnessBaseline, VisionWorker

log = logging.getLogger(__name__)
ENDED_STATES = ("stopped", "failed")
T = TypeVar("T")
SAVE_EVERY_S = 2.0  # open appearances are written to the gallery this often
RETIRE_EVERY_S = 3600.0  # retention is applied at start and then this often
FPS_WINDOW_S = 5.0  # the analysis rate shown for a camera is over this long


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp).timestamp()


@dataclass
class _Lane:
    """What the model thread keeps for one camera."""

    camera: Camera
    identifier: Identifier
    sharpness: SharpnessBaseline = field(default_factory=SharpnessBaseline)
    best: dict[int, tuple[float, ImageArray]] = field(default_factory=dict)  # track -> face
    wall_offset: float = 0.0  # captured_at - t of the camera's latest frame
    ended: bool = False
    analysed_at: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    preview: Preview | None = None  # the latest analysed frame, for the dashboard
    frames_analyzed: int = 0

    def face_jpeg(self, track: Track) -> bytes | None:
        """The track's best face as JPEG, kept with the exemplars it gives."""
        best = self.best.get(track.number)
        return jpeg_bytes(best[1], quality=90) if best is not None else None


@dataclass(frozen=True)
class Preview:
    """A camera's latest analysed frame and the faces on it (ID or ``None`` if not decided)."""

    image: ImageArray
    faces: list[tuple[tuple[float, float, float, float], str | None]]
    captured_at: float | None


@dataclass(frozen=True)
class CameraView:
    """What the dashboard shows of a camera."""

    camera: Camera
    analyzed_fps: float
    frames_analyzed: int
    preview: Preview | None


class Engine:
    """Runs the models on the cameras' newest frames in one thread until :meth:`stop`."""

    def __init__(self, worker: VisionWorker, cameras: list[Camera], frame_ready: threading.Event,
                 *, gallery: Gallery, engine: EngineSettings, events: EventSettings,
                 emit: Callable[[Event], None], metrics: Metrics,
                 retention_days: float | None = None) -> None:
        self.worker = worker
        self._retention_s = retention_days * 86400 if retention_days else None
        self._retired_at = -float("inf")
        self.gallery = gallery
        settings = MatchSettings(threshold=engine.threshold or worker.embedder.threshold)
        self._lanes = []
        for camera in cameras:
            lane = _Lane(camera, Identifier(gallery, settings, source=f"camera:{camera.name}"))
            lane.identifier.face_of = lane.face_jpeg
            self._lanes.append(lane)
        self._rows: dict[tuple[str, str], int] = {}  # open appearance -> its gallery row
        self._saved_at = time.monotonic()
        self._frame_ready = frame_ready
        self._max_batch = engine.max_batch_frames
        self.appearances = Appearances(events)
        self._emit = emit
        self._metrics = metrics
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name="models", daemon=True)
        self._finished = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> None:
        self._thread.start()

    def cameras(self) -> list[CameraView]:
        """The cameras with their analysis rate and latest frame (safe from any thread: it
        only reads what the model thread replaces whole)."""
        now = time.monotonic()
        views = []
        for lane in self._lanes:
            recent = [t for t in list(lane.analysed_at) if now - t <= FPS_WINDOW_S]
            views.append(CameraView(lane.camera, len(recent) / FPS_WINDOW_S,
                                    lane.frames_analyzed, lane.preview))
        return views

    def stop(self) -> None:
        """Ask the thread to finish: it analyses the frames already taken, ends every track and
        emits ``person.left`` for the open appearances."""
        self._stop.set()
        self._frame_ready.set()

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    def is_alive(self) -> bool:
        return self._thread.is_alive()

    def call(self, operation: Callable[[Gallery], T]) -> Future[T]:
        """Run ``operation`` on the gallery in the model thread, between two frames (the
        thread owns the gallery); its result or exception comes back through the future."""
        future: Future[T] = Future()
        self._commands.put((lambda: operation(self.gallery), future))
        self._frame_ready.set()
        if self._finished.is_set():  # nobody will run it
            self._fail_commands()
        return future

    def _commands_waiting(self) -> Iterator[tuple[Callable[[], Any], Future[Any]]]:
        """The queued commands not cancelled meanwhile, each taken off the queue."""
        while True:
            try:
                command, future = self._commands.get_nowait()
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                yield command, future

    def _fail_commands(self) -> None:
        for _, future in self._commands_waiting():
            future.set_exception(GalleryError("the service is stopping; the gallery takes no "
                                              "more changes"))

    def _run_commands(self) -> None:
        for command, future in self._commands_waiting():
            try:
                future.set_result(command())
            except Exception as error:  # the caller's to report
                future.set_exception(error)
            self._reconcile()

    def _reconcile(self) -> None:
        """After a change by the user: tracks of people who are no longer in the gallery are
        decided again, and their open appearances end."""
        events: list[Event] = []
        now = time.time()
        for lane in self._lanes:
            for track in lane.identifier.tracker.active:
                if track.identity is not None and track.identity not in self.gallery:
                    track.identity = None
        for camera, person, _, _ in self.appearances.spans():
            if Gallery.number(person) not in self.gallery:
                events += self.appearances.end(camera, person, now=now)
        self._send(events)

    def reject(self, identity: int, camera: str) -> int:
        """"Not this person": the tracks now assigned ``identity`` on ``camera`` are not them.
        Their faces are remembered as not ``identity`` and the tracks are decided again.
        Call it in the model thread (through :meth:`call`); returns how many tracks."""
        lanes = [lane for lane in self._lanes if lane.camera.name == camera]
        if not lanes:
            raise GalleryError(f"there is no camera {camera!r}")
        tracks = [track for track in lanes[0].identifier.tracker.active
                  if track.identity == identity]
        for track in tracks:
            self.gallery.reject(identity, template(track.embeddings(good_only=False)))
            track.identity = None
        if tracks:
            self._send(self.appearances.end(camera, Gallery.label(identity), now=time.time()))
        return len(tracks)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._frame_ready.wait(0.25)
                self._frame_ready.clear()
                self._run_commands()
                self.step()
            self._run_commands()
            self.step()
            for lane in self._lanes:
                self._end(lane)
            self._send(self.appearances.close(now=time.time()))
        except BaseException as error:  # the service sees it and shuts down
            log.exception("the model thread failed")
            self.error = error
        finally:
            self._finished.set()
            self._fail_commands()

    def step(self) -> None:
        """Analyse the newest frame of every camera that has one; expire old appearances."""
        taken: list[tuple[_Lane, Frame]] = []
        for lane in self._lanes:
            if lane.ended:
                continue
            frame = lane.camera.take()
            if frame is not None:
                taken.append((lane, frame))
            elif lane.camera.stats.state in ENDED_STATES:
                self._end(lane)
        by_size: dict[tuple[int, ...], list[tuple[_Lane, Frame]]] = {}
        for lane, frame in taken:
            by_size.setdefault(frame.image.shape, []).append((lane, frame))
        for group in by_size.values():
            for start in range(0, len(group), self._max_batch):
                self._analyse(group[start:start + self._max_batch])
        self._send(self.appearances.expire(time.time()))
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._save_open_appearances()
        if self._retention_s and time.monotonic() - self._retired_at >= RETIRE_EVERY_S:
            self._retired_at = time.monotonic()
            self._save_open_appearances()  # people present now are seen now
            gone = self.gallery.retire(time.time() - self._retention_s)
            if gone:
                log.info("retention: removed %d unnamed people not seen for %g days",
                         len(gone), self._retention_s / 86400)
        self._metrics.identities.set(len(self.gallery))
        self._metrics.open_appearances.set(len(self.appearances))

    def _analyse(self, batch: list[tuple[_Lane, Frame]]) -> None:
        lanes = {id(frame): lane for lane, frame in batch}
        frames = [frame for _, frame in batch]
        started = time.perf_counter()
        results = self.worker.process(
            frames, lambda frame, faces: lanes[id(frame)].identifier.skippable(frame.t,
                                                                              faces.boxes),
            [lane.sharpness for lane, _ in batch])
        self._metrics.model_seconds.observe(time.perf_counter() - started)
        self._metrics.batch_frames.observe(len(frames))
        for (lane, frame), result in zip(batch, results, strict=True):
            self._identify(lane, frame, result)

    def _identify(self, lane: _Lane, frame: Frame, result: FrameFaces) -> None:
        name = lane.camera.name
        self._metrics.frames_analyzed.labels(name).inc()
        self._metrics.faces.labels(name).inc(len(result.faces))
        if frame.captured_at is not None:
            lane.wall_offset = frame.captured_at - frame.t
        known = self.gallery.highest
        tracks, decided = lane.identifier.observe(frame.t, observations(result))
        lane.analysed_at.append(time.monotonic())
        lane.frames_analyzed += 1
        lane.preview = Preview(frame.image, [
            ((float(box[0]), float(box[1]), float(box[2]), float(box[3])),
             Gallery.label(track.identity) if track.identity is not None else None)
            for box, track in zip(result.faces.boxes, tracks, strict=True)], frame.captured_at)
        for i, track in enumerate(tracks):
            quality = float(result.quality[i]) + (1.0 if result.good[i] else 0.0)
            if quality > lane.best.get(track.number, (-1.0, None))[0]:
                lane.best[track.number] = (quality, face_crop(frame.image,
                                                              result.faces.boxes[i]))
        now = time.time()
        events: list[Event] = []
        # Tracks that ended undecided and were decided at their end: seen, and maybe gone.
        for track in decided:
            if track not in tracks:
                events += self.appearances.see(self._sighting(lane, track, known), now)
        for track in dict.fromkeys(tracks):
            if track.identity is not None:
                events += self.appearances.see(self._sighting(lane, track, known), now)
        live = {track.number for track in lane.identifier.tracker.active}
        lane.best = {number: best for number, best in lane.best.items() if number in live}
        self._send(events)

    def _sighting(self, lane: _Lane, track: Track, known: int) -> Sighting:
        """``known``: the highest identity number before this frame (IDs only grow, so a higher
        one was created for this track)."""
        assert track.identity is not None
        last = track.last
        quality, crop = lane.best[track.number]
        box = (float(last.box[0]), float(last.box[1]), float(last.box[2]), float(last.box[3]))
        return Sighting(
            camera=lane.camera.name, person=Gallery.label(track.identity),
            new=track.identity > known, frame_time=last.t,
            captured_at=last.t + lane.wall_offset,
            since=track.observations[0].t + lane.wall_offset, box=box, score=last.score,
            quality=quality, crop=crop)

    def _end(self, lane: _Lane) -> None:
        """A camera stopped or failed (or the service is stopping): decide its waiting tracks and
        close its appearances."""
        if lane.ended:
            return
        lane.ended = True
        known = self.gallery.highest
        now = time.time()
        events: list[Event] = []
        for track in lane.identifier.finish():
            if track.number in lane.best:
                events += self.appearances.see(self._sighting(lane, track, known), now)
        events += self.appearances.close(lane.camera.name, now=now)
        lane.best.clear()
        self._send(events)

    def _save_open_appearances(self) -> None:
        """Write how far the open appearances have got, so a crash loses only the last
        moments of them."""
        self._saved_at = time.monotonic()
        store = self.gallery.store
        with store.transaction():
            for camera, person, start, last_seen in self.appearances.spans():
                identity = Gallery.number(person)
                if identity not in self.gallery:
                    continue  # forgotten or merged meanwhile
                row = self._rows.get((camera, person))
                if row is None:
                    self._rows[camera, person] = store.add_appearance(
                        identity, f"camera:{camera}", start, last_seen)
                else:
                    store.extend_appearance(row, last_seen)

    def _send(self, events: list[Event]) -> None:
        left = [event for event in events if event["type"] == "person.left"]
        if left:
            self._save_open_appearances()
        for event in left:
            row = self._rows.pop((event["camera"], event["person"]), None)
            if row is not None:
                self.gallery.store.extend_appearance(row, _epoch(event["end"]))
            elif Gallery.number(event["person"]) in self.gallery:
                self.gallery.store.add_appearance(
                    Gallery.number(event["person"]), f"camera:{event['camera']}",
                    _epoch(event["start"]), _epoch(event["end"]))
        for event in events:
            if event["type"] == "person.appeared":
                log.info("%s %s on %s", event["person"],
                         "appeared (new)" if event["new"] else "appeared", event["camera"])
            self._emit(event)
