"""The appearance state machine and the event bus, with plain data and a hand-driven clock."""

from __future__ import annotations

import asyncio
import base64
import io

import numpy as np
from PIL import Image

from stream.config import EventSettings
from stream.pipeline.appearances import Appearances, Sighting, status_event
from stream.service.bus import EVENT_SCHEMA, EventBus

SETTINGS = EventSettings(left_after_s=3.0, update_interval_s=5.0, thumbnail_px=64)
FACE = np.full((80, 80, 3), 128, np.uint8)


def sighting(at: float, *, person: str = "p1", camera: str = "door", quality: float = 1.0,
             box: tuple[float, float, float, float] = (10, 10, 60, 60)) -> Sighting:
    return Sighting(camera=camera, person=person, new=True, frame_time=at - 1000.0,
                    captured_at=at, since=at - 0.4, box=box, score=0.99, quality=quality,
                    crop=FACE)


def test_an_appearance_begins_once_and_carries_a_thumbnail() -> None:
    machine = Appearances(SETTINGS)
    first = machine.see(sighting(1000.0), now=1000.2)
    assert [event["type"] for event in first] == ["person.appeared"]
    event = first[0]
    assert event["person"] == "p1" and event["camera"] == "door" and event["new"] is True
    assert event["box"] == [10, 10, 60, 60] and event["latency_ms"] == 200.0
    image = Image.open(io.BytesIO(base64.b64decode(event["thumbnail"])))
    assert image.format == "JPEG" and image.size == (64, 64)
    assert machine.see(sighting(1000.5), now=1000.6) == []
    assert len(machine) == 1


def test_updates_are_throttled_and_only_sent_with_news() -> None:
    machine = Appearances(SETTINGS)
    machine.see(sighting(1000.0), now=1000.0)
    assert machine.see(sighting(1002.0, quality=1.5), now=1002.0) == []  # too soon
    assert machine.see(sighting(1006.0), now=1006.0) == []  # nothing better, not moved
    updated = machine.see(sighting(1006.5, quality=1.5), now=1006.5)
    assert [event["type"] for event in updated] == ["person.updated"]
    assert updated[0]["thumbnail"] is not None
    moved = machine.see(sighting(1012.0, box=(300, 10, 350, 60)), now=1012.0)
    assert moved[0]["type"] == "person.updated" and moved[0]["thumbnail"] is None
    assert moved[0]["box"] == [300, 10, 350, 60]


def test_left_after_the_absence_with_start_end_and_duration() -> None:
    machine = Appearances(SETTINGS)
    machine.see(sighting(1000.0), now=1000.0)
    machine.see(sighting(1004.0), now=1004.0)
    assert machine.expire(1006.9) == []
    left = machine.expire(1007.1)
    assert len(left) == 1 and left[0]["type"] == "person.left"
    assert left[0]["duration_s"] == 4.4  # from the track's start, 0.4 s before it was identified
    assert left[0]["start"] == "1970-01-01T00:16:39.600Z"
    assert left[0]["end"] == "1970-01-01T00:16:44.000Z"
    assert len(machine) == 0
    again = machine.see(sighting(1010.0), now=1010.0)
    assert again[0]["type"] == "person.appeared"


def test_each_camera_and_person_is_its_own_appearance_and_close_ends_them() -> None:
    machine = Appearances(SETTINGS)
    machine.see(sighting(1000.0), now=1000.0)
    machine.see(sighting(1000.0, camera="yard"), now=1000.0)
    machine.see(sighting(1000.0, person="p2"), now=1000.0)
    assert len(machine) == 3
    yard = machine.close("yard", now=1001.0)
    assert [(e["camera"], e["person"]) for e in yard] == [("yard", "p1")]
    rest = machine.close(now=1001.0)
    assert sorted(e["person"] for e in rest) == ["p1", "p2"] and len(machine) == 0


def test_status_event_fields() -> None:
    event = status_event("door", "reconnecting", "connection refused", 2.5, 0.0)
    assert event == {"type": "camera.status", "camera": "door", "status": "reconnecting",
                     "reason": "connection refused", "time": "1970-01-01T00:00:00.000Z",
                     "retry_in_s": 2.5}


def test_bus_stamps_sequence_and_filters_cameras() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=10)
        door = bus.subscribe(10, cameras=["door"])
        everyone = bus.subscribe(10)
        bus.publish({"type": "camera.status", "camera": "yard"})
        bus.publish({"type": "camera.status", "camera": "door"})
        first = await everyone.get()
        assert first["schema"] == EVENT_SCHEMA and first["seq"] == 1
        assert (await everyone.get())["seq"] == 2
        only = await door.get()
        assert only["camera"] == "door" and only["seq"] == 2 and len(door) == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_loses_its_oldest_and_is_told_how_many() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=0)
        slow = bus.subscribe(3)
        fast = bus.subscribe(100)
        for number in range(10):
            bus.publish({"type": "test", "camera": "c", "n": number})
        assert len(fast) == 10
        notice = await slow.get()
        assert notice["type"] == "events.dropped" and notice["dropped"] == 7
        assert [(await slow.get())["n"] for _ in range(3)] == [7, 8, 9]
        assert slow.dropped == 7

    asyncio.run(scenario())


def test_replay_gives_recent_events_of_the_chosen_cameras() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=5)
        for number in range(8):
            bus.publish({"type": "test", "camera": "door" if number % 2 else "yard",
                         "n": number})
        late = bus.subscribe(10, cameras=["door"], replay=2)
        assert [(await late.get())["n"] for _ in range(2)] == [5, 7]
        late.close()
        try:
            await late.get()
        except EOFError:
            return
        raise AssertionError("a closed, drained subscription must end")

    asyncio.run(scenario())


def test_a_subscriber_that_stays_behind_still_gets_events_between_notices() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=0)
        slow = bus.subscribe(3)
        received = []
        for round_ in range(5):
            for number in range(10):
                bus.publish({"type": "test", "camera": "c", "n": round_ * 10 + number})
            received += [await slow.get(), await slow.get()]
        kinds = [event["type"] for event in received]
        assert kinds == ["events.dropped", "test"] * 5
        dropped = sum(e["dropped"] for e in received if e["type"] == "events.dropped")
        assert dropped + 5 + len(slow) == 50  # every event delivered, queued or counted

    asyncio.run(scenario())
