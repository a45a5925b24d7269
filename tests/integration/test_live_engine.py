"""The live engine's hand-off to the models: on the CPU each core takes a camera's frame as soon
as it is free (no batch waits for its slowest frame), while every camera's frames still go in
one after another, each after the camera's frame before came back; ``max_batch_frames: 1`` puts
one frame in the models at a time."""

from __future__ import annotations

import itertools
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch

from benchmarks.synthetic import GroundTruth
from stream.config import CameraConfig, EngineSettings, EventSettings, SourceSettings
from stream.identity.gallery import Gallery
from stream.pipeline.live import Engine
from stream.service.metrics import Metrics
from stream.sources import Camera
from stream.storage import open_gallery
from stream.types import Event, Frame, PersonAppeared
from stream.vision.executor import FrameFaces, VisionWorker

pytestmark = pytest.mark.slow
CAMERAS = 3  # at 5 fps: more frames than one core analyses


@dataclass
class Batch:
    """A batch the engine gave the models: its cameras' frames, when it went in and came back."""

    frames: list[tuple[str, int]]  # (camera, frame index)
    started: float
    ended: float = float("inf")


@pytest.fixture(scope="module")
def worker(weights: None) -> VisionWorker:
    return VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"), threads=2)


def play(worker: VisionWorker, video: Path, max_batch: int, cameras: int = CAMERAS,
         during: Callable[[Engine], None] | None = None, *,
         slower: dict[str, float] | None = None
         ) -> tuple[list[Batch], list[Event], dict[str, int]]:
    """``video`` played as ``cameras`` live cameras (at its own rate, the newest frame winning)
    through the engine, ``during`` run beside it: the batches it made, the events it sent, and
    the frames each camera handed over. ``slower``: cameras whose results the engine gets that
    many seconds after the models finished (as if their frames were that much slower)."""
    batches: list[Batch] = []
    events: list[Event] = []
    names: dict[int, str] = {}  # a frame's id -> its camera
    submit = worker.submit

    def watched(frames: list[Frame], *args: Any) -> Future[list[FrameFaces]]:
        batch = Batch([(names[id(frame)], frame.index) for frame in frames], time.monotonic())
        batches.append(batch)
        future = submit(frames, *args)
        if delay := (slower or {}).get(batch.frames[0][0]):
            later: Future[list[FrameFaces]] = Future()

            def hand_over(done: Future[list[FrameFaces]]) -> None:
                threading.Timer(delay, later.set_result, [done.result()]).start()

            future.add_done_callback(hand_over)
            future = later
        future.add_done_callback(lambda _: setattr(batch, "ended", time.monotonic()))
        return future

    ready = threading.Event()
    live = [Camera(CameraConfig(name=f"cam{i}", url=str(video)), SourceSettings(),
                   detect_width=worker.detector.detect_width, on_status=lambda _: None,
                   frame_ready=ready, batch=max_batch)
            for i in range(cameras)]
    for camera in live:
        take = camera.take_batch

        def named(take: Callable[[], list[Frame]] = take, name: str = camera.name
                  ) -> list[Frame]:
            frames = take()
            names.update((id(frame), name) for frame in frames)
            return frames

        camera.take_batch = named  # type: ignore[method-assign]
    embedder = worker.embedder
    engine = Engine(worker, live, ready,
                    gallery=open_gallery(None, dim=embedder.dim, embedder=embedder.name,
                                         version=embedder.version),
                    engine=EngineSettings(max_batch_frames=max_batch), events=EventSettings(),
                    emit=events.append, metrics=Metrics())
    worker.submit = watched  # type: ignore[method-assign,assignment]
    try:
        engine.start()
        for camera in live:
            camera.start()
        if during is not None:
            during(engine)
        for camera in live:
            camera.join(120)
        engine.stop()
        engine.join(60)
    finally:
        worker.submit = submit  # type: ignore[method-assign]
    assert engine.error is None and not engine.is_alive()
    return batches, events, {camera.name: camera.stats.frames_sampled
                             - camera.stats.frames_dropped for camera in live}


def test_cores_take_cameras_frames_side_by_side_each_camera_in_order(
        worker: VisionWorker, demo_video: tuple[Path, GroundTruth]) -> None:
    video, truth = demo_video
    changed_at: list[float] = []

    def reject_nobody(engine: Engine) -> None:
        """"Not this person" (of someone who is not there) now and then: a command that may
        change tracks, run while frames come and go."""
        def command(_: Gallery) -> None:
            engine.reject(10**6, "cam0")
            changed_at.append(time.monotonic())

        for _ in range(10):
            time.sleep(0.5)
            engine.call(command).result(30)

    batches, events, handed = play(worker, video, max_batch=8, during=reject_nobody)

    for batch in batches:  # a batch is one camera's frames, in order
        assert len({camera for camera, _ in batch.frames}) == 1
    by_camera: dict[str, list[Batch]] = {}
    for batch in batches:
        by_camera.setdefault(batch.frames[0][0], []).append(batch)
    assert len(by_camera) == CAMERAS
    for mine in by_camera.values():
        indices = [index for batch in mine for _, index in batch.frames]
        assert indices == sorted(indices) and len(set(indices)) == len(indices)
        for before, after in itertools.pairwise(mine):
            assert after.started >= before.ended  # after the camera's frames before came back
    # Every frame a camera handed over was analysed (those still waiting at the end too).
    assert {name: len([i for b in mine for _, i in b.frames])
            for name, mine in by_camera.items()} == handed
    # Two cameras' batches were in the models at once (one per core), never more.
    at_once = [sum(other.started <= batch.started < other.ended for other in batches)
               for batch in batches]
    assert max(at_once) == worker.concurrency == 2
    # Tracks change only while no frame is in the models (their skip rule reads the tracks).
    assert len(changed_at) == 10
    assert not [t for t in changed_at for batch in batches if batch.started <= t < batch.ended]
    # The same video on every camera: the same people, one ID each across the cameras.
    appeared = [event for event in events if isinstance(event, PersonAppeared)]
    people = {event.person for event in appeared}
    assert len(people) == len(truth.persons)
    assert {event.camera for event in appeared} == {f"cam{i}" for i in range(CAMERAS)}


def test_one_frame_at_a_time_without_batching(
        worker: VisionWorker, demo_video: tuple[Path, GroundTruth]) -> None:
    batches, _, handed = play(worker, demo_video[0], max_batch=1, cameras=2)
    assert len(batches) == sum(handed.values())
    assert all(len(batch.frames) == 1 for batch in batches)
    assert all(not (other.started <= batch.started < other.ended)
               for batch in batches for other in batches if other is not batch)


def test_a_core_does_not_wait_for_the_other_cores_slower_frame(
        worker: VisionWorker, demo_video: tuple[Path, GroundTruth]) -> None:
    """The lanes take a finished frame at once, not after an older one still in the models: the
    core it freed goes on with its camera's next frames meanwhile."""
    batches, _, _ = play(worker, demo_video[0], max_batch=8, cameras=2, slower={"cam0": 1.5})
    slow = [batch for batch in batches if batch.frames[0][0] == "cam0"]
    fast = [batch for batch in batches if batch.frames[0][0] == "cam1"]
    inside = [sum(batch.started <= other.started and other.ended <= batch.ended
                  for other in fast) for batch in slow]
    # Waiting for the slow frame, cam1 would get one batch into the models per cam0 batch.
    assert max(inside) >= 3
