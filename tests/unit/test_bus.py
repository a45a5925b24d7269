"""The event bus, with typed events and no server: sequence numbers, camera filters, replay,
slow consumers' losses, encoding once, and the drop metric."""

from __future__ import annotations

import asyncio
import json

import numpy as np

from stream.codec import EVENT_SCHEMA, EventEncoder
from stream.service.bus import EventBus
from stream.service.metrics import Metrics
from stream.types import (
    CameraStatusChanged,
    Event,
    EventsDropped,
    IdentityDeleted,
    IdentityMerged,
    IdentityRenamed,
    PersonAppeared,
)


def numbered(n: int, camera: str = "c") -> CameraStatusChanged:
    """A test event that carries the number ``n`` (as its time)."""
    return CameraStatusChanged(camera=camera, status="streaming", reason=None, time=float(n))


def number(event: Event) -> int:
    assert isinstance(event, CameraStatusChanged)
    return int(event.time)


def test_bus_stamps_sequence_and_filters_cameras() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=10)
        door = bus.subscribe(10, cameras=["door"])
        everyone = bus.subscribe(10)
        bus.publish(numbered(0, "yard"))
        bus.publish(numbered(1, "door"))
        first = await everyone.get()
        assert first.seq == 1
        assert bus.encoded(first).document["schema"] == EVENT_SCHEMA
        assert bus.encoded(first).document["seq"] == 1
        assert (await everyone.get()).seq == 2
        only = await door.get()
        assert isinstance(only, CameraStatusChanged)
        assert only.camera == "door" and only.seq == 2 and len(door) == 0

    asyncio.run(scenario())


def test_a_slow_subscriber_loses_its_oldest_and_is_told_how_many() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        bus = EventBus(replay=0, metrics=metrics)
        slow = bus.subscribe(3, consumer="mqtt")
        fast = bus.subscribe(100, consumer="websocket")
        for n in range(10):
            bus.publish(numbered(n))
        assert len(fast) == 10
        notice = await slow.get()
        assert isinstance(notice, EventsDropped) and notice.dropped == 7
        document = bus.encoded(notice).document
        assert document["type"] == "events.dropped" and "seq" not in document
        assert [number(await slow.get()) for _ in range(3)] == [7, 8, 9]
        assert slow.dropped == 7
        # Counted where they are dropped, with the consumer's kind as the label.
        text = metrics.exposition().decode()
        assert 'facestream_events_dropped_total{consumer="mqtt"} 7.0' in text
        assert 'facestream_events_dropped_total{consumer="websocket"} 0.0' in text

    asyncio.run(scenario())


def test_replay_gives_recent_events_of_the_chosen_cameras() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=5)
        for n in range(8):
            bus.publish(numbered(n, "door" if n % 2 else "yard"))
        late = bus.subscribe(10, cameras=["door"], replay=2)
        assert [number(await late.get()) for _ in range(2)] == [5, 7]
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
        received: list[Event] = []
        for round_ in range(5):
            for n in range(10):
                bus.publish(numbered(round_ * 10 + n))
            received += [await slow.get(), await slow.get()]
        kinds = [event.kind for event in received]
        assert kinds == ["events.dropped", "camera.status"] * 5
        dropped = sum(e.dropped for e in received if isinstance(e, EventsDropped))
        assert dropped + 5 + len(slow) == 50  # every event delivered, queued or counted

    asyncio.run(scenario())


def test_each_event_is_encoded_once_for_every_consumer() -> None:
    async def scenario() -> None:
        bus = EventBus(encoder=EventEncoder(48))
        first, second = bus.subscribe(10), bus.subscribe(10, consumer="mqtt")
        face = np.full((60, 60, 3), 90, np.uint8)
        published = bus.publish(PersonAppeared(
            camera="door", person="p1", name=None, appearance="door-1", new=True,
            frame_time=1.5, captured_at=0.25, time=0.5, box=(1.0, 2.0, 3.0, 4.0), score=0.9,
            distance=None, confidence=None, thumbnail=face, latency_ms=250.0))
        a, b = await first.get(), await second.get()
        assert a is b is published
        assert first.encoded(a) is second.encoded(b)  # one encoding, shared
        document = json.loads(first.encoded(a).text)
        assert document == first.encoded(a).document
        assert document == EventEncoder(48).document(published)
        assert document["captured_at"] == "1970-01-01T00:00:00.250Z"
        assert bus.depths() == {"mqtt": 0, "other": 0}

    asyncio.run(scenario())


def face_of(person: str, camera: str = "door") -> PersonAppeared:
    return PersonAppeared(
        camera=camera, person=person, name=None, appearance=f"{camera}-1", new=True,
        frame_time=1.0, captured_at=1.0, time=1.0, box=(1.0, 2.0, 3.0, 4.0), score=0.9,
        distance=None, confidence=None, thumbnail=np.full((8, 8, 3), 200, np.uint8),
        latency_ms=10.0)


def test_removing_a_person_purges_them_from_replay_and_the_encoded_cache() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=100)
        removed: list[str] = []
        bus.on_removed(removed.append)
        live = bus.subscribe(100)
        for person in ("p1", "p2", "p3"):
            bus.encoded(bus.publish(face_of(person)))
        bus.encoded(bus.publish(IdentityRenamed(person="p2", name="Ada Lovelace", time=2.0)))
        forgot = bus.publish(IdentityDeleted(person="p2", forgotten=True, time=3.0))
        merged = bus.publish(IdentityMerged(person="p1", merged="p3", time=4.0))
        assert removed == ["p2", "p3"]
        replayed = bus.subscribe(100, replay=100)
        texts = [bus.encoded(await replayed.get()).text for _ in range(len(replayed))]
        assert [json.loads(text)["type"] for text in texts] == [
            "person.appeared", "identity.deleted", "identity.merged"]
        assert json.loads(texts[0])["person"] == "p1"
        assert not [text for text in texts if "Ada Lovelace" in text]
        cached = [encoded.text for encoded in bus._encoded.values()]  # what the bus keeps
        assert cached and not [t for t in cached if '"p2"' in t and "identity" not in t]
        assert not [t for t in cached if '"p3"' in t and "identity" not in t]
        # A consumer already queued them: it gets them in order, before the removal.
        kinds = [(await live.get()).kind for _ in range(len(live))]
        assert kinds == ["person.appeared"] * 3 + ["identity.renamed", "identity.deleted",
                                                   "identity.merged"]
        assert forgot.seq < merged.seq

    asyncio.run(scenario())
