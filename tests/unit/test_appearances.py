"""An appearance's span on plain data: absences counted between the frames looked at, and the
faces the detector doubted that are the person by their embedding."""

from __future__ import annotations

import numpy as np

from stream.config import EventSettings
from stream.pipeline.appearances import Appearances, Sighting
from stream.pipeline.lane import Lane, identifying_lane
from stream.storage import open_gallery
from stream.types import Event, Faces, Frame, PersonAppeared, PersonLeft, PersonUpdated
from stream.vision.executor import FrameFaces

DIM = 16
FACE = np.full((80, 80, 3), 128, np.uint8)
IMAGE = np.zeros((120, 320, 3), np.uint8)
RNG = np.random.default_rng(5)
PERSON = RNG.normal(size=DIM)
PERSON /= np.linalg.norm(PERSON)
ELSE = RNG.normal(size=DIM)
ELSE -= ELSE @ PERSON * PERSON
ELSE /= np.linalg.norm(ELSE)


def sighting(at: float) -> Sighting:
    return Sighting(person="p1", name=None, new=True, frame_time=at, captured_at=at + 1000,
                    since_frame_time=at, since=at + 1000, box=(10, 10, 60, 60), score=0.99,
                    quality=1.0, crop=FACE, distance=None, confidence=None)


def test_an_absence_runs_between_the_frames_looked_at() -> None:
    machine = Appearances("door", EventSettings(left_after_s=1.0))
    machine.see(sighting(0.0), now=1000.0)
    # Sampled every 0.4 s: the frames at 0.4 and 0.8 s lack them, the one at 1.2 s shows them,
    # so they were away from about 0.2 s to 1.0 s, under the 1 s that ends an appearance.
    assert machine.expire(1.2, now=1001.2, step=0.4) == []
    assert machine.see(sighting(1.2), now=1001.2) == []
    assert machine.expire(2.4, now=1002.4, step=0.4) == []
    left = machine.expire(2.8, now=1002.8, step=0.4)
    assert [(e.start_frame_time, e.end_frame_time) for e in left
            if isinstance(e, PersonLeft)] == [(0.0, 1.2)]


def test_a_track_that_began_on_the_frame_after_the_absence_may_still_be_them() -> None:
    machine = Appearances("door", EventSettings(left_after_s=1.0))
    machine.see(sighting(0.0), now=1000.0)
    assert machine.expire(1.8, now=1001.8, step=0.4, undecided_since=[1.2]) == []
    assert len(machine.expire(1.8, now=1001.8, step=0.4, undecided_since=[1.6])) == 1


def look(person: np.ndarray, k: int) -> np.ndarray:
    vector = person + np.random.default_rng(k).normal(size=DIM) * 0.01
    normed: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return normed


def frame(index: int, score: float, person: np.ndarray | None = PERSON) -> FrameFaces:
    """Frame ``index`` (10 a second) with one face of ``person`` (none when ``None``) at one
    place, scored ``score`` by the detector (gated on it)."""
    n = 0 if person is None else 1
    boxes = np.tile(np.array([[40, 30, 90, 90]], np.float32), (n, 1))
    scores = np.full(n, score, np.float32)
    vectors = (np.stack([look(person, index)]) if person is not None
               else np.zeros((0, DIM), np.float32))
    good = scores >= 0.95
    return FrameFaces(Frame(index, index / 10, IMAGE), Faces(boxes, scores,
                                                             np.zeros((n, 5, 2), np.float32)),
                      vectors, np.ones(n, np.bool_), np.full(n, 10, np.float32),
                      np.full(n, 100, np.float32), good, np.ones(n, np.float32), good,
                      (None,) * n)


def lane() -> Lane:
    gallery = open_gallery(None, dim=DIM, embedder="test", version="1")
    return identifying_lane("door", gallery, threshold=0.5, source="test",
                            events=EventSettings(left_after_s=1.0))


def test_an_appearance_takes_in_the_doubted_faces_that_are_the_person() -> None:
    door = lane()
    events: list[Event] = []
    # She enters half turned away (the detector doubts her), then faces the camera, then
    # turns away again; a hand then continues her track.
    scores = [0.8] * 5 + [0.99] * 5 + [0.85] * 5
    for i, score in enumerate(scores):
        events += door.take(frame(i, score), now=float(i)).events
    hand = PERSON * 0.82 + ELSE * 0.572  # 0.6 from her face: it continues her track
    for i in range(15, 25):
        step = door.take(frame(i, 0.8, hand), now=float(i))
        assert step.tracks[0].identity is not None
        events += step.events
    events += door.finish(now=30.0)
    left = [e for e in events if isinstance(e, PersonLeft)]
    assert [(e.start_frame_time, e.end_frame_time) for e in left] == [(0.0, 1.4)]
    # Every event's face is one the detector is sure of.
    faced = [e for e in events if isinstance(e, PersonAppeared | PersonUpdated)]
    assert faced and all(e.score >= 0.95 and e.frame_time <= 0.9 for e in faced)


def test_doubted_faces_alone_never_begin_an_appearance() -> None:
    door = lane()
    events: list[Event] = []
    for i in range(10):
        events += door.take(frame(i, 0.9), now=float(i)).events
    events += door.finish(now=11.0)
    assert events == []
