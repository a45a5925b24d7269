"""The appearance state machine, with plain data and a hand-driven clock."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from stream.codec import EventEncoder
from stream.config import EventSettings
from stream.pipeline.appearances import Appearances, Sighting
from stream.types import PersonAppeared, PersonLeft, PersonUpdated

SETTINGS = EventSettings(left_after_s=3.0, update_interval_s=5.0, thumbnail_px=64)
FACE = np.full((80, 80, 3), 128, np.uint8)
WALL = 1000.0  # wall clock minus frame time


def sighting(at: float, *, person: str = "p1", quality: float = 1.0,
             box: tuple[float, float, float, float] = (10, 10, 60, 60),
             crop: np.ndarray = FACE) -> Sighting:
    """A face at frame time ``at``, of a track that began 0.4 s before."""
    return Sighting(person=person, new=True, frame_time=at, captured_at=at + WALL,
                    since_frame_time=at - 0.4, since=at - 0.4 + WALL, box=box, score=0.99,
                    quality=quality, crop=crop)


def test_an_appearance_begins_once_and_carries_a_thumbnail() -> None:
    machine = Appearances("door", SETTINGS)
    first = machine.see(sighting(0.0), now=1000.2)
    assert len(first) == 1 and isinstance(first[0], PersonAppeared)
    event = EventEncoder(SETTINGS.thumbnail_px).document(first[0])
    assert event["type"] == "person.appeared"
    assert event["person"] == "p1" and event["camera"] == "door" and event["new"] is True
    assert event["box"] == [10, 10, 60, 60] and event["latency_ms"] == 200.0
    image = Image.open(io.BytesIO(base64.b64decode(event["thumbnail"])))
    assert image.format == "JPEG" and image.size == (64, 64)
    assert machine.see(sighting(0.5), now=1000.6) == []
    assert len(machine) == 1


def test_updates_are_throttled_and_only_sent_with_news() -> None:
    machine = Appearances("door", SETTINGS)
    machine.see(sighting(0.0), now=1000.0)
    assert machine.see(sighting(2.0, quality=1.5), now=1002.0) == []  # too soon
    assert machine.see(sighting(6.0, quality=1.4), now=1006.0) == []  # nothing better, not moved
    updated = machine.see(sighting(6.5, quality=1.6), now=1006.5)
    assert len(updated) == 1 and isinstance(updated[0], PersonUpdated)
    assert updated[0].thumbnail is not None
    moved = machine.see(sighting(12.0, box=(300, 10, 350, 60)), now=1012.0)
    assert isinstance(moved[0], PersonUpdated) and moved[0].thumbnail is None
    assert moved[0].box == (300, 10, 350, 60)


def test_left_after_the_absence_with_start_end_and_duration() -> None:
    machine = Appearances("door", SETTINGS)
    machine.see(sighting(0.0), now=1000.0)
    machine.see(sighting(4.0), now=1004.0)
    assert machine.expire(6.9, now=1006.9) == []
    left = machine.expire(7.1, now=1007.1)
    assert len(left) == 1 and isinstance(left[0], PersonLeft)
    assert left[0].duration_s == 4.4  # from the track's start, 0.4 s before it was identified
    assert (left[0].start_frame_time, left[0].end_frame_time) == (-0.4, 4.0)
    document = EventEncoder().document(left[0])
    assert document["start"] == "1970-01-01T00:16:39.600Z"
    assert document["end"] == "1970-01-01T00:16:44.000Z"
    assert len(machine) == 0
    again = machine.see(sighting(10.0), now=1010.0)
    assert isinstance(again[0], PersonAppeared)


def test_the_left_event_carries_the_best_face_of_the_appearance() -> None:
    machine = Appearances("door", SETTINGS)
    best = np.full((80, 80, 3), 200, np.uint8)
    machine.see(sighting(0.0, quality=1.0), now=1000.0)
    machine.see(sighting(0.5, quality=1.8, crop=best), now=1000.5)
    machine.see(sighting(1.0, quality=1.2), now=1001.0)
    left = machine.close(now=1002.0)
    assert isinstance(left[0], PersonLeft) and left[0].quality == 1.8
    assert left[0].thumbnail is best


def test_an_undecided_track_that_began_in_the_absence_holds_the_appearance_open() -> None:
    machine = Appearances("door", SETTINGS)
    machine.see(sighting(0.0), now=1000.0)
    # A track began at 2.0 s, after the person was last seen: it may be them.
    assert machine.expire(4.0, now=1004.0, undecided_since=[2.0]) == []
    # A track that began before they were last seen is someone beside them: no reason to wait.
    assert len(machine.expire(4.0, now=1004.0, undecided_since=[-1.0])) == 1


def test_a_late_decision_extends_the_appearance_back_to_its_track_start() -> None:
    machine = Appearances("door", SETTINGS)
    machine.see(sighting(5.0), now=1005.0)
    late = Sighting(person="p1", new=False, frame_time=4.0, captured_at=1004.0,
                    since_frame_time=1.0, since=1001.0, box=(10, 10, 60, 60), score=0.99,
                    quality=1.0, crop=FACE)
    machine.see(late, now=1006.0)
    left = machine.close(now=1007.0)
    assert isinstance(left[0], PersonLeft)
    assert (left[0].start_frame_time, left[0].end_frame_time) == (1.0, 5.0)


def test_each_person_is_their_own_appearance_and_close_ends_them() -> None:
    machine = Appearances("door", SETTINGS)
    machine.see(sighting(0.0), now=1000.0)
    machine.see(sighting(0.0, person="p2"), now=1000.0)
    assert len(machine) == 2
    ended = machine.end("p2", now=1001.0)
    assert len(ended) == 1 and isinstance(ended[0], PersonLeft) and ended[0].person == "p2"
    assert machine.end("p2", now=1001.0) == []
    rest = machine.close(now=1001.0)
    assert [e.person for e in rest if isinstance(e, PersonLeft)] == ["p1"] and not machine
