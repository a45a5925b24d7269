"""The model thread of the live service: the newest frame of each camera through the models
(side by side on the CPU's cores, in one batch on a GPU), identities from one gallery shared by
all cameras, and appearance events.

The thread owns the trackers and the gallery; nothing else changes them. The models run on the
worker's threads (:meth:`VisionWorker.submit`); there the skip rule reads the tracks of the
frame's own camera, which the thread does not extend until the frame is back; commands and
others' changes to the gallery wait until every frame is back (``_settle``).
It never waits on a consumer: events leave through ``emit``, which must not block.

Nothing outside the thread may stop it: it looks at the gallery several times a second for
changes made by other processes (``facestream gallery ... delete`` while the service runs,
another node) and reconciles its tracks with them; a write the gallery refuses (a full disk) is
reported in :attr:`Engine.persistence_error` and the metrics and retried, while analysis and
events go on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from concurrent import futures
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from stream import gallery_admin
from stream.config import EngineSettings, EventSettings
from stream.errors import GalleryError, StorageError
from stream.identity.gallery import Gallery
from stream.identity.matcher import template
from stream.pipeline.lane import Lane, identifying_lane
from stream.pipeline.record import AppearanceRecorder
from stream.service.metrics import Metrics
from stream.sources import Camera
from stream.storage.postgres import PostgresStore
from stream.types import Event, Frame, IdentityDeleted, ImageArray, PersonLeft
from stream.vision.executor import FrameFaces, VisionWorker

log = logging.getLogger(__name__)
ENDED_STATES = ("stopped", "failed")
T = TypeVar("T")
SAVE_EVERY_S = 2.0  # open appearances are written to the gallery this often
RETIRE_EVERY_S = 3600.0  # retention is applied at start and then this often
FPS_WINDOW_S = 5.0  # the analysis rate shown for a camera is over this long
# Others' changes are looked for this often: a look costs nothing on a shared gallery until its
# NOTIFY says there is news, and a query of the log on a SQLite file.
REFRESH_EVERY_S = 0.1
ERASURES_EVERY_S = 1.0  # erasures other sessions held up are retried this often
DUPLICATES_EVERY_S = 5.0  # on a shared gallery, two IDs of one person are looked for this often
DUPLICATES_WITHIN_S = 600.0  # among the identities created this recently
UNRECORDED_MAX = 1000  # ended appearances kept for a retry while the gallery takes no writes


@dataclass
class _Camera:
    """What the model thread keeps for one camera: its lane, and what the dashboard shows."""

    camera: Camera
    lane: Lane
    wall_clock: bool  # the camera's timeline is the wall clock (not a file decoded at will)
    ended: bool = False
    analysed_at: deque[float] = field(default_factory=lambda: deque(maxlen=50))
    preview: Preview | None = None  # the latest analysed frame, for the dashboard
    frames_analyzed: int = 0
    backlog: deque[Frame] = field(default_factory=deque)  # taken, not yet in the models
    submitted_at: float = -float("inf")  # when its frames last went in (monotonic)

    @property
    def source(self) -> str:
        return f"camera:{self.camera.name}"


@dataclass(frozen=True)
class _Batch:
    """Frames in the models, and when they went in (``time.perf_counter``)."""

    frames: list[tuple[_Camera, Frame]]
    result: Future[list[FrameFaces]]
    started: float


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
        self.threshold = engine.threshold or worker.embedder.threshold
        self._cameras = [
            _Camera(camera, identifying_lane(camera.name, gallery, threshold=self.threshold,
                                             events=events, source=f"camera:{camera.name}",
                                             engine=engine),
                    wall_clock=camera.config.kind != "file" or camera.config.realtime)
            for camera in cameras]
        self._recorder = AppearanceRecorder(gallery, wall_clock=True)
        self._saved_at = time.monotonic()
        self._refreshed_at = self._erasures_at = self._duplicates_at = time.monotonic()
        self._reload = False  # the last refresh failed: read the whole gallery again
        # Ended appearances the gallery refused (a full disk), oldest first, retried on saves;
        # beyond UNRECORDED_MAX the oldest are lost (the disk has been full for long).
        self._unrecorded: deque[tuple[str, list[PersonLeft]]] = deque(maxlen=UNRECORDED_MAX)
        self._frame_ready = frame_ready
        self._max_batch = engine.max_batch_frames
        self._batches: deque[_Batch] = deque()  # in the models, oldest first
        self._emit = emit
        self._metrics = metrics
        self._stop = threading.Event()
        self._commands: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = (
            queue.SimpleQueue())
        self._thread = threading.Thread(target=self._run, name="models", daemon=True)
        self._finished = threading.Event()
        self.error: BaseException | None = None
        # Why the gallery refused the last write (``None`` once writes succeed again).
        self.persistence_error: str | None = None

    def start(self) -> None:
        self._thread.start()

    def cameras(self) -> list[CameraView]:
        """The cameras with their analysis rate and latest frame (safe from any thread: it
        only reads what the model thread replaces whole)."""
        now = time.monotonic()
        views = []
        for state in self._cameras:
            recent = [t for t in list(state.analysed_at) if now - t <= FPS_WINDOW_S]
            views.append(CameraView(state.camera, len(recent) / FPS_WINDOW_S,
                                    state.frames_analyzed, state.preview))
        return views

    def present(self) -> int:
        """How many appearances are open, on all cameras."""
        return sum(len(state.lane.appearances) for state in self._cameras)

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
        if not self._commands.empty():
            self._settle()
        for command, future in self._commands_waiting():
            try:
                future.set_result(command())
            except StorageError as error:  # the caller's to report, and the service's
                self._persistence_failed(error)
                future.set_exception(error)
            except Exception as error:  # the caller's to report
                future.set_exception(error)
            self._reconcile()

    def _reconcile(self) -> None:
        """After a change by the user: tracks of people who are no longer in the gallery are
        decided again, their open appearances end, and names are looked up again."""
        now = time.time()
        for state in self._cameras:
            state.lane.forget_names()
            for track in state.lane.assigner.active_tracks():
                if track.identity is not None and track.identity not in self.gallery:
                    track.identity = None
            for appearance in state.lane.appearances.open():
                if Gallery.number(appearance.person) not in self.gallery:
                    self._send(state, state.lane.end(appearance.person, now))
            preview = state.preview
            if preview is not None and any(
                    person is not None and Gallery.number(person) not in self.gallery
                    for _, person in preview.faces):
                state.preview = None  # it shows a removed person's face

    def _refresh(self) -> None:
        """Take in the changes other processes made to the gallery, and finish erasures that
        their reads held up. Reading the gallery may fail (it is being replaced, say): the
        next look reads all of it again."""
        self._refreshed_at = time.monotonic()
        gone: list[int] = []  # removed through another node (deleted, forgotten, merged away)
        try:
            if self._reload:
                self._settle()
                self.gallery.reload()
                self._reload, changed = False, True
            else:
                changes = self.gallery.refresh(before_change=self._settle)
                changed = bool(changes)
                gone = sorted(identity for identity in changes if identity not in self.gallery)
            if time.monotonic() - self._erasures_at >= ERASURES_EVERY_S:
                self._erasures_at = time.monotonic()
                self.gallery.store.complete_erasures(wait_ms=0)
        except StorageError as error:
            self._persistence_failed(error)
            return
        except Exception:  # the gallery as another process left it: never fatal here
            log.exception("reading the changes to the gallery failed; reading it again")
            self._reload = True
            return
        if changed:
            self._reconcile()
        for identity in gone:  # after their appearances ended: this node's sinks let go too
            self._emit(IdentityDeleted(person=Gallery.label(identity), forgotten=False,
                                       time=time.time()))

    def _merge_duplicates(self) -> None:
        """On a shared gallery: merge the pairs of IDs that nodes which could not see each
        other's writes made of one person (see :meth:`PostgresStore.duplicates`), announcing
        each with ``identity.merged``. Looked for without the lock, merged under it (after
        taking in the others' changes) so that two nodes never merge one pair twice."""
        self._duplicates_at = time.monotonic()
        store = self.gallery.store
        if not isinstance(store, PostgresStore):  # one writer: no partition
            return
        since = time.time() - DUPLICATES_WITHIN_S
        try:
            if not store.duplicates(self.threshold, since):
                return
            self._settle()
            with store.transaction():
                store.lock_creation()
                self.gallery.refresh()
                merged = [gallery_admin.merge(self.gallery, kept, gone)
                          for kept, gone in store.duplicates(self.threshold, since)]
        except StorageError as error:  # the store kept none of it, the index may have
            self._persistence_failed(error)
            self._reload = True
            return
        except GalleryError as error:  # the pair changed meanwhile
            log.warning("merging two IDs of one person failed (%s); tried again later", error)
            self._reload = True
            return
        self._reconcile()  # the changes taken in under the lock, and the merges
        for event in merged:
            log.warning("%s and %s were made of one person by two nodes: merged",
                        event.person, event.merged)
            self._emit(event)

    def reject(self, identity: int, camera: str) -> int:
        """"Not this person": the tracks now assigned ``identity`` on ``camera`` are not them.
        Their faces are remembered as not ``identity`` and the tracks are decided again.
        Call it in the model thread (through :meth:`call`); returns how many tracks."""
        states = [state for state in self._cameras if state.camera.name == camera]
        if not states:
            raise GalleryError(f"there is no camera {camera!r}")
        state = states[0]
        tracks = [track for track in state.lane.assigner.active_tracks()
                  if track.identity == identity]
        for track in tracks:
            self.gallery.reject(identity, template(track.embeddings(good_only=False)))
            track.identity = None
        if tracks:
            self._send(state, state.lane.end(Gallery.label(identity), time.time()))
        return len(tracks)

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                self._frame_ready.wait(0.25)
                self._frame_ready.clear()
                self._run_commands()
                if time.monotonic() - self._refreshed_at >= REFRESH_EVERY_S:
                    self._refresh()
                if time.monotonic() - self._duplicates_at >= DUPLICATES_EVERY_S:
                    self._merge_duplicates()
                self.step()
            self._run_commands()
            self._drain()
            for state in self._cameras:
                self._end(state)
        except BaseException as error:  # the service sees it and shuts down
            log.exception("the model thread failed")
            self.error = error
        finally:
            self._finished.set()
            self._fail_commands()

    def step(self) -> None:
        """Take what the models found on the frames they finished, give them the newest frames
        of the cameras they are not busy with, and expire old appearances."""
        self._take_finished()
        self._start_batches()
        now = time.time()
        for state in self._cameras:
            # A camera on the wall clock that sends nothing still lets time pass; a file
            # decoded at will has only its own timeline.
            if state.wall_clock and not state.ended and state.lane.last_t is not None:
                self._send(state, state.lane.tick(now - state.lane.wall_offset, now))
        if time.monotonic() - self._saved_at >= SAVE_EVERY_S:
            self._save_open_appearances()
        if self._retention_s and time.monotonic() - self._retired_at >= RETIRE_EVERY_S:
            self._retired_at = time.monotonic()
            self._save_open_appearances()  # people present now are seen now
            try:
                gone = self.gallery.retire(time.time() - self._retention_s)
            except StorageError as error:
                self._persistence_failed(error)
                gone = []
            if gone:
                log.info("retention: removed %d unnamed people not seen for %g days",
                         len(gone), self._retention_s / 86400)
        self._metrics.identities.set(len(self.gallery))
        self._metrics.open_appearances.set(self.present())

    def _settle(self) -> None:
        """Take back every frame in the models before the gallery or the tracks change: the
        frames' skip rule reads their camera's tracks, and the lanes that take them back must
        find their tracks' identities in the gallery (commands, reads too, and others' changes
        wait the milliseconds this takes)."""
        while self._batches:
            self._take_finished(wait=True)

    def _drain(self) -> None:
        """The service is stopping: analyse the frames the cameras have ready, and all that
        cameras which have ended still hold."""
        self.step()
        while self._batches or any(state.backlog for state in self._cameras):
            self._take_finished(wait=True)
            self._start_batches(running_too=False)

    def _start_batches(self, *, running_too: bool = True) -> None:
        """Give the models new batches while they have room: at most ``max_batch_frames``
        frames in them and :attr:`VisionWorker.concurrency` batches. A camera's frames go in
        only after the models returned its frames before (a frame's faces are decided against
        its camera's tracks of the frame before); the cameras that waited longest go first. On
        the CPU each free core takes a batch of its own, one camera's frames, so that no core
        waits for another's; a GPU gets the frames of all ready cameras (of one size) in one
        batch. ``running_too``: new frames are taken from cameras still running, not only from
        those that ended."""
        free = self.worker.concurrency - len(self._batches)
        room = self._max_batch - sum(len(batch.frames) for batch in self._batches)
        if free <= 0 or room <= 0:
            return
        in_models = {id(state) for batch in self._batches for state, _ in batch.frames}
        ready: list[_Camera] = []
        for state in sorted(self._cameras, key=lambda state: state.submitted_at):
            if state.ended or id(state) in in_models:
                continue
            # The state first: a camera offers its last frame before it says it has ended.
            ended = state.camera.stats.state in ENDED_STATES
            if not state.backlog and (running_too or ended):
                state.backlog.extend(state.camera.take_batch())
                if not state.backlog and ended:
                    self._end(state)
            if state.backlog:
                ready.append(state)
        # Batches of several cameras on one core were cheaper per frame, but kept each frame in
        # for the others' (four cameras: capture-to-event p95 390-460 ms against 345-375).
        groups = [ready] if self.worker.concurrency == 1 else [[state] for state in ready[:free]]
        for group in groups:
            filling: list[tuple[_Camera, Frame]] = []
            for state in group:
                shape = (filling[0][1] if filling else state.backlog[0]).image.shape
                if room <= 0 or state.backlog[0].image.shape != shape:
                    continue  # next time, in a batch of its own size
                while state.backlog and room > 0 and state.backlog[0].image.shape == shape:
                    filling.append((state, state.backlog.popleft()))
                    room -= 1
                state.submitted_at = time.monotonic()
            if filling:
                self._submit(filling)

    def _submit(self, frames: list[tuple[_Camera, Frame]]) -> None:
        lanes = {id(frame): state.lane for state, frame in frames}
        result = self.worker.submit(
            [frame for _, frame in frames],
            lambda frame, faces: lanes[id(frame)].skippable(frame, faces),
            [state.lane.sharpness for state, _ in frames])
        result.add_done_callback(lambda _: self._frame_ready.set())
        self._batches.append(_Batch(frames, result, time.perf_counter()))

    def _take_finished(self, *, wait: bool = False) -> None:
        """The lanes take the finished batches' faces, oldest first (``wait``: the oldest
        batch too, waited for, even if it is not finished). Batches in the models at once are
        of different cameras, so a finished one does not wait for an older one: its core gets
        the next frame at once (waiting, one core idled while the other finished a slower
        frame: with four cameras the two cores were 1.5-1.6 busy)."""
        if wait and self._batches:
            futures.wait([self._batches[0].result])
        for batch in [batch for batch in self._batches if batch.result.done()]:
            self._batches.remove(batch)
            results = batch.result.result()  # a failure of the models stops the thread
            self._metrics.model_seconds.observe(time.perf_counter() - batch.started)
            self._metrics.batch_frames.observe(len(batch.frames))
            for (state, frame), result in zip(batch.frames, results, strict=True):
                self._take(state, frame, result)

    def _take(self, state: _Camera, frame: Frame, result: FrameFaces) -> None:
        name = state.camera.name
        self._metrics.frames_analyzed.labels(name).inc()
        self._metrics.faces.labels(name).inc(len(result.faces))
        try:
            step = state.lane.take(result, time.time())
        except StorageError as error:  # a new person or exemplar could not be stored:
            self._persistence_failed(error)  # their track is decided again next frame
            return
        state.analysed_at.append(time.monotonic())
        state.frames_analyzed += 1
        state.preview = Preview(frame.image, [
            ((float(box[0]), float(box[1]), float(box[2]), float(box[3])),
             Gallery.label(track.identity) if track.identity is not None else None)
            for box, track in zip(result.faces.boxes, step.tracks, strict=True)],
            frame.captured_at)
        self._send(state, step.events)

    def _end(self, state: _Camera) -> None:
        """A camera stopped or failed (or the service is stopping): decide its waiting tracks and
        close its appearances."""
        if not state.ended:
            state.ended = True
            self._send(state, state.lane.finish(time.time()))

    def _save_open_appearances(self) -> None:
        """Write the open appearances, and the ended ones a full disk held back."""
        self._saved_at = time.monotonic()
        try:
            self._recorder.save_open({state.source: state.lane.appearances.open()
                                      for state in self._cameras})
            while self._unrecorded:
                source, left = self._unrecorded[0]
                self._recorder.record(source, left)
                self._unrecorded.popleft()
        except StorageError as error:
            self._persistence_failed(error)
            return
        if self.persistence_error is not None:
            log.info("the gallery takes writes again")
            self.persistence_error = None
            self._metrics.persistence_failing.set(0)

    def _persistence_failed(self, error: StorageError) -> None:
        """A write the gallery refused: reported, counted, and retried by the next save."""
        if self.persistence_error is None:
            log.error("%s; analysis goes on, and the writes are retried", error)
        self.persistence_error = str(error)
        self._metrics.persistence_failures.inc()
        self._metrics.persistence_failing.set(1)

    def _send(self, state: _Camera, events: list[Event]) -> None:
        left = [event for event in events if isinstance(event, PersonLeft)]
        if left:
            self._unrecorded.append((state.source, left))
            self._save_open_appearances()
        for event in events:
            self._emit(event)
