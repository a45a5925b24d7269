"""The appearance state machine, with plain data and a hand-driven clock."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from stream.codec import EventEncoder
from stream.config import EventSettings
from stream.pipeline.appearances import Appearances, Sighting, appearance_id
from stream.types import PersonAppeared, PersonLeft, PersonUpdated

SETTINGS = EventSettings(left_after_s=3.0, update_interval_s=5.0, thumbnail_px=64)
FACE = np.full((80, 80, 3), 128, np.uint8)
WALL = 1000.0  # wall clock minus frame time


def sighting(at: float, *, person: str = "p1", quality: float = 1.0,
             box: tuple[float, float, float, float] = (10, 10, 60, 60),
             crop: np.ndarray = FACE, name: str | None = None,
             distance: float | None = None) -> Sighting:
    """A face at frame time ``at``, of a track that began 0.4 s before."""
    return Sighting(person=person, name=name, new=distance is None, frame_time=at,
                    captured_at=at + WALL, since_frame_time=at - 0.4, since=at - 0.4 + WALL,
                    box=box, score=0.99, quality=quality, crop=crop, distance=distance,
                    confidence=None if distance is None else round(1 - distance / 0.6, 3))


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
    late = Sighting(person="p1", name=None, new=False, frame_time=4.0, captured_at=1004.0,
                    since_frame_time=1.0, since=1001.0, box=(10, 10, 60, 60), score=0.99,
                    quality=1.0, crop=FACE, distance=0.3, confidence=0.5)
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


def test_one_appearance_id_ties_its_events_and_the_next_appearance_gets_another() -> None:
    machine = Appearances("door", SETTINGS)
    events = machine.see(sighting(0.0), now=1000.0)
    events += machine.see(sighting(6.0, quality=2.0), now=1006.0)
    events += machine.expire(10.0, now=1010.0)
    assert [type(e) for e in events] == [PersonAppeared, PersonUpdated, PersonLeft]
    ids = {e.appearance for e in events if isinstance(e, PersonAppeared | PersonUpdated
                                                      | PersonLeft)}
    assert len(ids) == 1
    again = machine.see(sighting(20.0), now=1020.0)[0]
    assert isinstance(again, PersonAppeared) and again.appearance not in ids
    camera, millis, random = again.appearance.split("-")
    assert camera == "door" and int(millis, 16) == 1020000 and len(random) == 8


def test_appearance_ids_sort_by_time_and_never_repeat() -> None:
    made = [appearance_id("door", 1_764_000_000.0 + i / 1000) for i in range(1000)]
    assert made == sorted(made) and len(set(made)) == len(made)
    same_moment = {appearance_id("door", 1_764_000_000.0) for _ in range(1000)}
    assert len(same_moment) == 1000  # two machines, one camera name, one millisecond


def test_events_carry_the_name_as_it_is_now_and_the_match_evidence() -> None:
    machine = Appearances("door", SETTINGS)
    appeared = machine.see(sighting(0.0, distance=0.42), now=1000.0)[0]
    assert isinstance(appeared, PersonAppeared)
    assert (appeared.name, appeared.distance, appeared.confidence) == (None, 0.42, 0.3)
    assert appeared.new is False
    renamed = machine.see(sighting(6.0, quality=2.0, name="Ada", distance=0.3), now=1006.0)[0]
    assert isinstance(renamed, PersonUpdated) and renamed.name == "Ada"
    machine.see(sighting(7.0, name="Ada", distance=0.5), now=1007.0)
    left = machine.close(now=1008.0)[0]
    assert isinstance(left, PersonLeft) and left.name == "Ada"
    assert (left.distance, left.confidence) == (0.3, 0.5)  # the closest decision
    document = EventEncoder().document(left)
    assert document["name"] == "Ada" and document["appearance"] == appeared.appearance


def test_a_new_person_has_no_distance() -> None:
    machine = Appearances("door", SETTINGS)
    appeared = machine.see(sighting(0.0), now=1000.0)[0]
    assert isinstance(appeared, PersonAppeared) and appeared.new
    document = EventEncoder().document(appeared)
    assert document["distance"] is None and document["confidence"] is None
    assert document["name"] is None
    left = machine.close(now=1001.0)[0]
    assert isinstance(left, PersonLeft) and left.distance is None
