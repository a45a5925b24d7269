"""The lane on plain data: faces in, tracks and typed events out, no model."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from stream.config import EventSettings
from stream.pipeline.lane import Lane, identifying_lane
from stream.storage import open_gallery
from stream.types import Faces, Frame, PersonAppeared, PersonLeft
from stream.vision.executor import FrameFaces
from tests.fixtures.disk import fill
from tests.fixtures.people import People

DIM = 16
PEOPLE = People(seed=11, dim=DIM)
CENTRES = PEOPLE.centres
IMAGE = np.zeros((120, 320, 3), np.uint8)
face = PEOPLE.face


def hand_of(person: int) -> np.ndarray:
    """What a hand or a microphone beside ``person``'s face embeds as: near enough to continue
    their track, farther than the threshold from their face."""
    away = CENTRES[1 - person] - CENTRES[person]
    vector = CENTRES[person] + 0.6 * away / np.linalg.norm(away)
    unit: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return unit


def result(index: int, people: list[tuple[int, float]], *, cut: bool = False,
           second_at: float = 0.0, looks: list[np.ndarray] | None = None) -> FrameFaces:
    """Frame ``index`` (10 a second) with a face per (person, detection score) at one place
    (the second one ``second_at`` pixels to the right); ``looks``: their embeddings, when not
    the people's faces."""
    n = len(people)
    boxes = np.tile(np.array([[40, 30, 90, 90]], np.float32), (n, 1))
    boxes[1:, [0, 2]] += second_at
    scores = np.array([score for _, score in people], np.float32)
    faces = Faces(boxes, scores, np.zeros((n, 5, 2), np.float32))
    vectors = np.stack(looks or [face(p) for p, _ in people]) if n else np.zeros((0, DIM),
                                                                                 np.float32)
    good = scores >= 0.95
    return FrameFaces(Frame(index, index / 10, IMAGE, discontinuity=cut), faces, vectors,
                      np.ones(n, np.bool_), np.full(n, 10, np.float32),
                      np.full(n, 100, np.float32), good, np.ones(n, np.float32), good,
                      (None,) * n)


def lane() -> Lane:
    gallery = open_gallery(None, dim=DIM, embedder="test", version="1")
    return identifying_lane("door", gallery, threshold=0.5, source="test",
                            events=EventSettings(left_after_s=1.0))


def test_a_hand_on_a_known_track_is_not_that_person() -> None:
    door = lane()
    events = []
    for i in range(5):
        events += door.take(result(i, [(0, 0.99)]), now=float(i)).events
    assert [type(e) for e in events] == [PersonAppeared]
    # The detector is unsure of what now continues the track (a hand, a microphone)
    for i in range(5, 30):
        events += door.take(result(i, [(0, 0.8)], looks=[hand_of(0)]), now=float(i)).events
    left = [e for e in events if isinstance(e, PersonLeft)]
    assert len(left) == 1 and left[0].end_frame_time == 0.4  # the last face it was sure of


def test_a_track_of_unsure_detections_makes_no_event() -> None:
    door = lane()
    events = []
    for i in range(30):
        events += door.take(result(i, [(1, 0.85)]), now=float(i)).events
    events += door.finish(now=31.0)
    assert events == []


def test_a_cut_ends_tracks_but_not_the_appearance_of_who_stays() -> None:
    door = lane()
    events = []
    tracks = []
    for i in range(10):
        step = door.take(result(i, [(0, 0.99)], cut=i == 5), now=float(i))
        events += step.events
        tracks += step.tracks
    events += door.finish(now=11.0)
    assert tracks[4] is not tracks[5]  # nothing continues across the cut
    assert {t.identity for t in tracks} == {1}  # the same person, decided again
    assert [type(e) for e in events] == [PersonAppeared, PersonLeft]


def test_a_stranger_waits_while_the_disk_is_full_and_known_people_keep_their_events(
        full_disk: Path) -> None:
    gallery = open_gallery(full_disk / "gallery.db", dim=DIM, embedder="test", version="1")
    door = identifying_lane("door", gallery, threshold=0.5, source="test",
                            events=EventSettings(left_after_s=1.0))
    events = []
    for i in range(5):  # person 0 is known before the disk fills up
        events += door.take(result(i, [(0, 0.99)]), now=float(i)).events
    filler = fill(full_disk)
    try:
        for i in range(5, 15):  # person 1 comes (elsewhere): nobody can be created now
            step = door.take(result(i, [(0, 0.99), (1, 0.99)], second_at=200), now=float(i))
            events += step.events
        assert step.tracks[0].identity == 1 and step.tracks[1].identity is None
    finally:
        filler.unlink()
    step = door.take(result(15, [(0, 0.99), (1, 0.99)], second_at=200), now=15.0)
    assert step.tracks[1].identity == 2  # decided as soon as the disk takes it
    events += step.events + door.finish(now=16.0)
    assert sorted(e.person for e in events if isinstance(e, PersonAppeared)) == ["p1", "p2"]
    gallery.store.close()


def test_a_person_matched_from_the_gallery_is_named_and_not_new(
        caplog: pytest.LogCaptureFixture) -> None:
    gallery = open_gallery(None, dim=DIM, embedder="test", version="1")
    ada = gallery.create(np.stack([face(0)]))
    gallery.store.rename(ada, "Ada")
    door = identifying_lane("door", gallery, threshold=0.5, source="test",
                            events=EventSettings(left_after_s=1.0))
    events = []
    with caplog.at_level(logging.INFO, logger="stream.pipeline.lane"):
        for i in range(5):
            events += door.take(result(i, [(0, 0.99), (1, 0.99)], second_at=200),
                                now=float(i)).events
    appeared = {e.person: e for e in events if isinstance(e, PersonAppeared)}
    known, stranger = appeared["p1"], appeared["p2"]
    assert (known.name, known.new) == ("Ada", False)
    assert known.distance is not None and 0 <= known.distance < 0.5
    assert known.confidence == round(1 - known.distance / 0.5, 3) and known.confidence > 0.5
    assert (stranger.name, stranger.new, stranger.distance, stranger.confidence) == (
        None, True, None, None)
    logged = [record.getMessage() for record in caplog.records]
    assert "p1 (Ada) appeared on door at 0.0 s" in logged
    assert "p2 appeared (new) on door at 0.0 s" in logged
    # A rename reaches the events once the lane is told names changed.
    gallery.store.rename(ada, "Ada Lovelace")
    door.take(result(5, [(0, 0.99)]), now=5.0)
    assert door.person_name(ada) == "Ada"  # the lane's answer, until it forgets
    door.forget_names()  # her appearance ends with no face since: it still has her new name
    left = [e for e in door.finish(7.0) if isinstance(e, PersonLeft)]
    assert {e.person: e.name for e in left} == {"p1": "Ada Lovelace", "p2": None}
    assert {e.appearance for e in left} == {known.appearance, stranger.appearance}
    gallery.store.close()
