"""The MQTT sink against a real mosquitto broker, watched by real MQTT subscribers.

Some steps call the blocking ``Broker.start()`` and open a ``Subscriber`` from inside the event
loop on purpose: the publisher shares that loop, so it cannot send anything before the subscriber
is subscribed, and the subscriber cannot miss what is sent right after a (re)connection.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from contextlib import closing
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.codec import Document, EventEncoder
from stream.config import MqttSettings
from stream.imaging import square_jpeg
from stream.service.bus import EventBus
from stream.service.sinks.mqtt import MqttSink
from stream.storage.sqlite import SQLiteStore
from stream.types import (
    CameraStatusChanged,
    Event,
    IdentityDeleted,
    IdentityMerged,
    ImageArray,
    PersonAppeared,
    PersonLeft,
    PersonUpdated,
)
from tests.fixtures.mosquitto import Broker, BrokerFactory, Subscriber, on_topic

REPO = Path(__file__).resolve().parents[2]
LOGGER = "stream.service.sinks.mqtt"
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
FACE = np.full((40, 40, 3), 120, np.uint8)
OTHER_FACE = np.full((40, 40, 3), 200, np.uint8)


def base64_jpeg(face: ImageArray) -> str:
    """A face as the wire shows it: a 96 x 96 JPEG, base64."""
    return base64.b64encode(square_jpeg(face, 96)).decode("ascii")


THUMBNAIL = base64_jpeg(FACE)


NODE = "node-1"
GALLERY = "g1"


def settings(broker: Broker, **overrides: Any) -> MqttSettings:
    return MqttSettings.model_validate({"url": broker.url, "client_id": "facestream-test",
                                        "topic_prefix": "fs", "keepalive_s": 5, **FAST,
                                        **overrides})


def new_sink(mqtt: MqttSettings, **options: Any) -> MqttSink:
    """A sink of node ``NODE`` and gallery ``GALLERY``, unless ``options`` say otherwise."""
    return MqttSink(mqtt, **{"node": NODE, "gallery": GALLERY, **options})


def appeared(person: str, camera: str = "front", name: str | None = None) -> PersonAppeared:
    now = time.time()
    return PersonAppeared(camera=camera, person=person, name=name, appearance=f"{camera}-1",
                          new=True, frame_time=1.0, captured_at=now, time=now,
                          box=(10.0, 20.0, 50.0, 80.0), score=0.93, distance=None,
                          confidence=None, thumbnail=FACE, latency_ms=41.5)


def updated(person: str, camera: str = "front", thumbnail: ImageArray | None = None,
            name: str | None = None) -> PersonUpdated:
    now = time.time()
    return PersonUpdated(camera=camera, person=person, name=name, appearance=f"{camera}-1",
                         frame_time=2.0, captured_at=now, time=now,
                         box=(12.0, 21.0, 52.0, 81.0), score=0.95, distance=0.31,
                         confidence=0.48, thumbnail=thumbnail, latency_ms=38.0)


def left(person: str, camera: str = "front", thumbnail: ImageArray = FACE,
         name: str | None = None) -> PersonLeft:
    now = time.time()
    return PersonLeft(camera=camera, person=person, name=name, appearance=f"{camera}-1",
                      start=now - 5, end=now - 3, duration_s=2.0, start_frame_time=1.0,
                      end_frame_time=3.0, thumbnail=thumbnail, quality=1.4, distance=None,
                      confidence=None, time=now)


def camera_status(camera: str, status: str) -> CameraStatusChanged:
    return CameraStatusChanged(camera=camera, status=status, reason=None, time=time.time())


def wire(event: Event) -> Document:
    """The JSON document of ``event``, as every sink sends it."""
    return EventEncoder().document(event)


def start(sink: MqttSink, bus: EventBus) -> asyncio.Task[None]:
    """Run ``sink`` on a new subscription to ``bus``, as the service does."""
    return asyncio.create_task(sink.run(bus.subscribe(sink.queue, consumer=sink.consumer)))


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout_s} s: {what}")
        await asyncio.sleep(0.02)


def run(scenario: Coroutine[Any, Any, None]) -> None:
    asyncio.run(scenario)


def records(caplog: pytest.LogCaptureFixture, level: int, text: str) -> list[logging.LogRecord]:
    return [record for record in caplog.records if record.name == LOGGER
            and record.levelno == level and text in record.getMessage()]


def test_events_and_retained_person_states(mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto))
        with Subscriber(mosquitto, "fs/#") as live:
            task = start(publisher, bus)
            await live.wait_for_async(on_topic("fs/status/node-1", "online"))
            assert publisher.connected
            sent: list[PersonAppeared | PersonUpdated | CameraStatusChanged] = [
                bus.publish(appeared("p1")), bus.publish(updated("p1")),
                bus.publish(camera_status("back", "reconnecting"))]
            for event in sent:
                message = await live.wait_for_async(
                    on_topic(f"fs/{event.camera}/events", seq=event.seq))
                assert message.json() == wire(event)
                assert not message.retain
            await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=sent[1].seq))

            with Subscriber(mosquitto, "fs/#") as late:
                state = await late.wait_for_async(on_topic("fs/g1/persons/p1"))
                status = await late.wait_for_async(on_topic("fs/status/node-1"))
            assert state.retain
            assert state.json() == {"person": "p1", "node": NODE, "name": None, "present": True,
                                    "camera": "front", "appearance": "front-1",
                                    "last_event": "person.updated",
                                    "last_seen": wire(sent[1])["time"],
                                    "thumbnail": THUMBNAIL, "seq": sent[1].seq}
            assert status.retain
            assert status.text == "online"

            gone = bus.publish(left("p1"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=gone.seq))
            with Subscriber(mosquitto, "fs/g1/persons/#") as late:
                state = await late.wait_for_async(on_topic("fs/g1/persons/p1"))
            assert state.retain
            assert state.json() == {"person": "p1", "node": NODE, "name": None,
                                    "present": False,
                                    "camera": "front", "appearance": "front-1",
                                    "last_event": "person.left", "last_seen": wire(gone)["end"],
                                    "thumbnail": THUMBNAIL, "seq": gone.seq}
            assert publisher.reconnects == 0
            await publisher.close()
            await task

    run(scenario())


def test_a_past_appearance_told_late_leaves_the_current_one_present(mosquitto: Broker) -> None:
    """Late recall tells an earlier appearance (appeared, then left) while the person's current
    one is open: they stay present until the current one ends."""
    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto))
        with Subscriber(mosquitto, "fs/#") as live:
            task = start(publisher, bus)
            bus.publish(replace(appeared("p1"), appearance="front-now"))
            bus.publish(replace(appeared("p1"), appearance="front-earlier", new=False))
            past = bus.publish(replace(left("p1"), appearance="front-earlier"))
            state = await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=past.seq))
            assert state.json()["present"] is True
            # Sent after the camera states the past appearance's end changed, if any.
            marker = bus.publish(appeared("p2", camera="back"))
            await live.wait_for_async(on_topic("fs/g1/persons/p2", seq=marker.seq))
            with Subscriber(mosquitto, "fs/front/state") as late:
                camera = await late.wait_for_async(on_topic("fs/front/state"))
            assert camera.json()["persons"] == ["p1"]
            now = bus.publish(replace(left("p1"), appearance="front-now"))
            state = await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=now.seq))
            assert state.json()["present"] is False
            await live.wait_for_async(
                lambda m: m.topic == "fs/front/state" and m.json()["present"] == 0)
            await publisher.close()
            await task

    run(scenario())


# A publisher in its own process, to be killed without a chance to say goodbye.
PUBLISHER_SCRIPT = """
import asyncio, sys
from stream.config import MqttSettings
from stream.service.bus import EventBus
from stream.service.sinks.mqtt import MqttSink
settings = MqttSettings(url=sys.argv[1], client_id="killed", topic_prefix="fs", keepalive_s=5)

async def main():
    async with MqttSink(settings, node="node-1", gallery="g1") as sink:
        await sink.run(EventBus().subscribe(sink.queue, consumer=sink.consumer))

asyncio.run(main())
"""


def test_last_will_marks_a_killed_publisher_offline(mosquitto: Broker) -> None:
    with Subscriber(mosquitto, "fs/status/node-1") as live:
        process = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, mosquitto.url],
                                   cwd=REPO)
        try:
            live.wait_for(on_topic("fs/status/node-1", "online"), timeout_s=10.0)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        live.wait_for(on_topic("fs/status/node-1", "offline"))
    with Subscriber(mosquitto, "fs/status/node-1") as late:
        status = late.wait_for(on_topic("fs/status/node-1"))
    assert (status.text, status.retain) == ("offline", True)


def test_close_sends_queued_events_then_offline(mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        with Subscriber(mosquitto, "fs/#") as live:
            async with new_sink(settings(mosquitto)) as publisher:
                task = start(publisher, bus)
                await live.wait_for_async(on_topic("fs/status/node-1", "online"))
                # Queued but not yet sent when the sink is left: leaving must send them first.
                queued = [bus.publish(appeared(f"p{n}", camera="door")) for n in range(5)]
            await asyncio.wait_for(task, 1.0)  # run() returns once the sink is left
            assert not publisher.connected
            offline = await live.wait_for_async(on_topic("fs/status/node-1", "offline"))
            order = live.messages.index(offline)
            for event in queued:
                message = await live.wait_for_async(on_topic("fs/door/events", seq=event.seq))
                assert live.messages.index(message) < order
            bus.publish(appeared("p9", camera="door"))  # after close: not sent
        with Subscriber(mosquitto, "fs/#") as late:
            status = await late.wait_for_async(on_topic("fs/status/node-1"))
            assert (status.text, status.retain) == ("offline", True)
            await late.wait_for_async(on_topic("fs/g1/persons/p4"))
            assert not late.matching(on_topic("fs/g1/persons/p9"))

    run(scenario())


def test_broker_restart_loses_nothing(mosquitto: Broker,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto))
        with Subscriber(mosquitto, "fs/#") as live:
            task = start(publisher, bus)
            await live.wait_for_async(on_topic("fs/status/node-1", "online"))
            quiet = bus.publish(appeared("p0", camera="back"))
            before = bus.publish(appeared("p1"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=before.seq))

        mosquitto.stop()
        # Published before the publisher can notice the broker is gone: it is taken from the
        # queue, its publish fails, and it must be sent again after the reconnection.
        in_flight = bus.publish(updated("p1", thumbnail=OTHER_FACE))
        await until(lambda: not publisher.connected, "the publisher notices the broker left")
        during = bus.publish(camera_status("front", "reconnecting"))
        await asyncio.sleep(0.3)  # a few failed connection attempts

        mosquitto.start()
        with Subscriber(mosquitto, "fs/#") as after:
            for event in (in_flight, during):
                message = await after.wait_for_async(
                    on_topic(f"fs/{event.camera}/events", seq=event.seq))
                assert message.json() == wire(event)
            later = bus.publish(left("p1", thumbnail=OTHER_FACE))
            await after.wait_for_async(on_topic("fs/front/events", seq=later.seq))
            await after.wait_for_async(on_topic("fs/g1/persons/p1", seq=later.seq))
        assert publisher.connected
        assert publisher.reconnects == 1

        # The restarted broker kept nothing; the publisher gave it back every person's state.
        with Subscriber(mosquitto, "fs/#") as late:
            p0 = await late.wait_for_async(on_topic("fs/g1/persons/p0"))
            p1 = await late.wait_for_async(on_topic("fs/g1/persons/p1"))
            status = await late.wait_for_async(on_topic("fs/status/node-1"))
        assert p0.retain
        assert p0.json()["seq"] == quiet.seq
        assert p0.json()["present"] is True
        assert p1.json()["seq"] == later.seq
        assert p1.json()["present"] is False
        assert p1.json()["thumbnail"] == base64_jpeg(OTHER_FACE)
        assert (status.text, status.retain) == ("online", True)
        await publisher.close()
        await task

    run(scenario())
    assert len(records(caplog, logging.WARNING, "unreachable")) == 1
    assert len(records(caplog, logging.INFO, "reconnected")) == 1


def test_a_full_queue_drops_the_oldest_and_says_so(mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto, queue=3))
        mosquitto.stop()
        task = start(publisher, bus)
        assert len(bus.subscriptions) == 1
        sent = [bus.publish(camera_status("front", "streaming")) for _ in range(10)]

        mosquitto.start()
        with Subscriber(mosquitto, "fs/#") as live:
            notice = await live.wait_for_async(on_topic("fs/events", type="events.dropped"))
            assert notice.json()["dropped"] == 7
            for event in sent[-3:]:
                await live.wait_for_async(on_topic("fs/front/events", seq=event.seq))
            received = {message.json()["seq"] for message in live.matching(
                on_topic("fs/front/events"))}
            assert received == {event.seq for event in sent[-3:]}
        await publisher.close()
        await task

    run(scenario())


def test_password_protected_broker(mosquitto_factory: BrokerFactory,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    broker = mosquitto_factory(users={"camera-hub": "s3cret"})

    async def scenario() -> None:
        bus = EventBus()
        wrong = new_sink(settings(broker, client_id="wrong", topic_prefix="wrong",
                                  username="camera-hub", password="guess"))
        task = start(wrong, bus)
        await until(lambda: len(records(caplog, logging.DEBUG, "failed")) >= 3,
                    "three failed connection attempts")
        assert not wrong.connected
        assert not task.done()
        assert "authori" in records(caplog, logging.DEBUG, "failed")[0].getMessage()
        assert len(records(caplog, logging.WARNING, "unreachable")) == 1
        await wrong.close()
        await task

        right = new_sink(settings(broker, client_id="right", topic_prefix="right",
                                  username="camera-hub", password="s3cret"))
        with Subscriber(broker, "#", username="camera-hub", password="s3cret") as live:
            task = start(right, bus)
            await live.wait_for_async(on_topic("right/status/node-1", "online"))
            assert right.connected
            event = bus.publish(appeared("p1"))
            await live.wait_for_async(on_topic("right/front/events", seq=event.seq))
            assert not live.matching(on_topic("wrong/status/node-1", "online"))
            await right.close()
            await task

    run(scenario())


def retained(broker: Broker, topic: str = "fs/g1/persons/#") -> dict[str, bytes]:
    """The retained messages a new subscriber of ``topic`` gets now (topic -> payload)."""
    with Subscriber(broker, topic) as late:
        time.sleep(0.5)  # retained messages come right after the subscription
        return {m.topic: m.payload for m in late.matching(lambda m: m.retain)}


def test_removed_people_are_cleared_from_the_broker_and_never_published_again(
        mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto))
        with Subscriber(mosquitto, "fs/#") as live:
            task = start(publisher, bus)
            await live.wait_for_async(on_topic("fs/status/node-1", "online"))
            for person in ("p1", "p2", "p3"):
                last = bus.publish(appeared(person))
            await live.wait_for_async(on_topic("fs/g1/persons/p3", seq=last.seq))
            assert set(retained(mosquitto)) == {"fs/g1/persons/p1", "fs/g1/persons/p2",
                                                "fs/g1/persons/p3"}
            # A person.left still queued when the person is forgotten is sent, in order, but
            # their state is not kept.
            bus.publish(left("p2"))
            bus.publish(IdentityDeleted(person="p2", forgotten=True, time=time.time()))
            merged = bus.publish(IdentityMerged(person="p1", merged="p3", time=time.time()))
            await live.wait_for_async(on_topic("fs/events", seq=merged.seq))
            await live.wait_for_async(lambda m: m.topic == "fs/g1/persons/p3" and not m.payload)
            assert set(retained(mosquitto)) == {"fs/g1/persons/p1"}

            mosquitto.stop()
            await until(lambda: not publisher.connected, "the publisher notices")
            mosquitto.start()
            await until(lambda: publisher.connected, "the publisher reconnects")
            later = bus.publish(updated("p1"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", seq=later.seq), 10)
        assert set(retained(mosquitto)) == {"fs/g1/persons/p1"}
        await publisher.close()
        await task

    run(scenario())


def test_people_a_crashed_run_left_present_are_marked_absent(mosquitto: Broker) -> None:
    stale = {"person": "p7", "present": True, "camera": "front", "last_event": "person.updated",
             "last_seen": "2026-01-01T00:00:00.000Z", "thumbnail": THUMBNAIL, "seq": 12}
    gone = {**stale, "person": "p8", "present": False, "seq": 13}
    with Subscriber(mosquitto, "fs/#") as crashed:  # what the crashed run left on the broker
        for state in (stale, gone):
            crashed._client.publish(f"fs/g1/persons/{state['person']}", json.dumps(state), qos=1,
                                    retain=True).wait_for_publish(5)

    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto))
        with Subscriber(mosquitto, "fs/g1/persons/#") as live:
            task = start(publisher, bus)
            corrected = await live.wait_for_async(
                lambda m: m.topic == "fs/g1/persons/p7" and not m.retain and b"false" in m.payload)
            assert json.loads(corrected.payload) == {**stale, "present": False}
            fresh = bus.publish(appeared("p9"))
            await live.wait_for_async(on_topic("fs/g1/persons/p9", seq=fresh.seq))
        states = {topic: json.loads(payload) for topic, payload in retained(mosquitto).items()}
        assert states["fs/g1/persons/p7"] == {**stale, "present": False}
        assert states["fs/g1/persons/p8"] == gone  # untouched
        assert states["fs/g1/persons/p9"]["present"] is True
        await publisher.close()
        await task

    run(scenario())


def test_two_galleries_on_one_broker_keep_their_own_person_states(
        mosquitto: Broker, tmp_path: Path) -> None:
    def gallery_id(path: Path) -> str:
        store = SQLiteStore(path, embedder="dlib-resnet", version="1", dim=4)
        try:
            return store.gallery_id
        finally:
            store.close()

    home, office = gallery_id(tmp_path / "home.db"), gallery_id(tmp_path / "office.db")
    assert home != office
    assert gallery_id(tmp_path / "home.db") == home  # kept in the file
    older = tmp_path / "older.db"  # written before galleries had an ID: given one, kept
    first = gallery_id(older)
    with closing(sqlite3.connect(older)) as db, db:
        db.execute("DELETE FROM meta WHERE key = 'gallery_id'")
    given = gallery_id(older)
    assert given not in (first, home, office)
    assert gallery_id(older) == given

    async def scenario() -> None:
        buses = [EventBus(encoder=EventEncoder(node=node)) for node in ("node-1", "node-2")]
        sinks = [new_sink(settings(mosquitto, client_id="home"), gallery=home),
                 new_sink(settings(mosquitto, client_id="office"), node="node-2",
                          gallery=office),
                 new_sink(settings(mosquitto, client_id="named", gallery_name="shop"),
                          node="node-3", gallery=office)]
        with Subscriber(mosquitto, "fs/#") as live:
            tasks = [start(sink, bus)
                     for sink, bus in zip(sinks, [*buses, EventBus()], strict=True)]
            for node in ("node-1", "node-2", "node-3"):
                await live.wait_for_async(on_topic(f"fs/status/{node}", "online"))
            at_home = buses[0].publish(appeared("p1", camera="hall", name="Ada"))
            at_office = buses[1].publish(appeared("p1", camera="desk", name="Bo"))
            message = await live.wait_for_async(on_topic("fs/hall/events", seq=at_home.seq))
            assert message.json() == {**wire(at_home), "node": "node-1"}
            message = await live.wait_for_async(on_topic("fs/desk/events", seq=at_office.seq))
            assert message.json()["node"] == "node-2"
            await live.wait_for_async(on_topic(f"fs/{office}/persons/p1", seq=at_office.seq))
            await live.wait_for_async(on_topic(f"fs/{home}/persons/p1", seq=at_home.seq))
            for sink in sinks:
                await sink.close()
            await asyncio.gather(*tasks)
        states = {topic: json.loads(payload)
                  for topic, payload in retained(mosquitto, "fs/+/persons/#").items()}
        assert {topic: state["name"] for topic, state in states.items()} == {
            f"fs/{home}/persons/p1": "Ada", f"fs/{office}/persons/p1": "Bo"}
        statuses = {topic: payload for topic, payload in
                    retained(mosquitto, "fs/status/#").items()}
        assert statuses == {f"fs/status/node-{n}": b"offline" for n in (1, 2, 3)}
        assert sinks[2].gallery == "shop"

    run(scenario())


def test_people_removed_while_no_sink_ran_are_cleared_at_start(mosquitto: Broker) -> None:
    kept = {"person": "p7", "name": None, "present": False, "camera": "front", "seq": 3}
    with Subscriber(mosquitto, "fs/#") as earlier:  # what an earlier run left on the broker
        for person in ("p7", "p8"):
            earlier._client.publish(f"fs/g1/persons/{person}",
                                    json.dumps({**kept, "person": person}), qos=1,
                                    retain=True).wait_for_publish(5)

    async def scenario() -> None:
        publisher = new_sink(settings(mosquitto), people={"p7": None, "p9": "Ada"})
        with Subscriber(mosquitto, "fs/g1/persons/#") as live:
            task = start(publisher, EventBus())
            await live.wait_for_async(on_topic("fs/g1/persons/p8", ""))
            await publisher.close()
            await task
        assert {topic: json.loads(payload) for topic, payload in retained(mosquitto).items()} \
            == {"fs/g1/persons/p7": kept}

    run(scenario())


def test_nodes_of_one_gallery_share_person_states_and_the_latest_sighting_wins(
        mosquitto: Broker) -> None:
    async def scenario() -> None:
        lobby, park = EventBus(), EventBus()
        first = new_sink(settings(mosquitto, client_id="first"), cameras=["lobby"])
        second = new_sink(settings(mosquitto, client_id="second"), node="node-2",
                          cameras=["park"])
        with Subscriber(mosquitto, "fs/#") as live:
            tasks = [start(first, lobby), start(second, park)]
            for node in ("node-1", "node-2"):
                await live.wait_for_async(on_topic(f"fs/status/{node}", "online"))
            lobby.publish(appeared("p1", camera="lobby"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", node="node-1"))
            at_park = park.publish(appeared("p1", camera="park"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", node="node-2"))
            # Ada left the lobby before the park saw her: the lobby's state is not sent.
            gone = lobby.publish(left("p1", camera="lobby"))
            assert gone.end < at_park.time
            after = lobby.publish(camera_status("lobby", "streaming"))
            await live.wait_for_async(on_topic("fs/lobby/events", seq=after.seq))
            states = live.matching(on_topic("fs/g1/persons/p1"))
            assert states[-1].json() == {**states[-1].json(), "node": "node-2", "present": True,
                                         "camera": "park"}
            assert not live.matching(on_topic("fs/g1/persons/p1", node="node-1",
                                              present=False))
            # She leaves the park too: the park, which saw her last, says so.
            park.publish(left("p1", camera="park"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", node="node-2",
                                               present=False))
            # Back in the lobby later: the lobby's state wins again.
            back = lobby.publish(appeared("p1", camera="lobby"))
            await live.wait_for_async(on_topic("fs/g1/persons/p1", node="node-1",
                                               seq=back.seq))
            for publisher in (first, second):
                await publisher.close()
            await asyncio.gather(*tasks)
        state = json.loads(retained(mosquitto)["fs/g1/persons/p1"])
        assert state == {**state, "node": "node-1", "present": True, "seq": back.seq}

    run(scenario())
