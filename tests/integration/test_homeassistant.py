"""Home Assistant MQTT discovery, the camera states and the snapshots, against a real mosquitto:
the sink is driven by real events through the bus and watched by a real MQTT subscriber that
reads the topics as Home Assistant does (its templates rendered with Jinja, as Home Assistant
renders them)."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pytest
from PIL import Image

from benchmarks.synthetic import GroundTruth
from stream.service.bus import EventBus
from stream.types import IdentityCreated, IdentityDeleted, IdentityRenamed
from tests.fixtures import free_port
from tests.fixtures.mosquitto import Broker, Message, Subscriber, on_topic
from tests.integration.live import EventClient, Service, write_config
from tests.integration.test_mqtt import (
    FACE,
    OTHER_FACE,
    appeared,
    left,
    new_sink,
    retained,
    run,
    settings,
    start,
    updated,
    wire,
)
from tests.integration.test_rest import TOKEN, Live

DISCOVERY = {"discovery": True, "snapshots": True}
FRONT_PRESENT = "homeassistant/sensor/fs_front/present/config"
FRONT_LAST = "homeassistant/sensor/fs_front/last_person/config"
ADA = "homeassistant/device_tracker/fs_g1/p1/config"
BO = "homeassistant/device_tracker/fs_g1/p2/config"


def render(template: str, payload: bytes) -> str:
    """What Home Assistant makes of ``payload`` with a ``value_template``."""
    return jinja2.Environment().from_string(template).render(value_json=json.loads(payload))


def config(message: Message) -> dict[str, Any]:
    document = message.json()
    assert isinstance(document, dict)
    return document


def latest(subscriber: Subscriber, topic: str) -> Message:
    messages = subscriber.matching(on_topic(topic))
    assert messages, f"nothing on {topic}"
    return messages[-1]


async def settled(subscriber: Subscriber, topic: str, template: str, value: str) -> None:
    """Wait until the latest message on ``topic`` renders ``template`` as ``value``."""
    deadline = time.monotonic() + 5
    while True:
        messages = subscriber.matching(on_topic(topic))
        if messages and messages[-1].payload and render(template,
                                                        messages[-1].payload) == value:
            return
        if time.monotonic() > deadline:
            shown = [render(template, m.payload) for m in messages if m.payload]
            raise AssertionError(f"{topic}: {template} never gave {value!r}: {shown}")
        await asyncio.sleep(0.02)


def test_a_named_person_is_home_while_seen_and_entities_follow_the_gallery(
        mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto, **DISCOVERY), cameras=["front", "back"],
                             people={"p1": "Ada"})
        with Subscriber(mosquitto, "#") as ha:
            task = start(publisher, bus)
            await ha.wait_for_async(on_topic("fs/status/node-1", "online"))
            present = config(await ha.wait_for_async(on_topic(FRONT_PRESENT)))
            last = config(await ha.wait_for_async(on_topic(FRONT_LAST)))
            tracker = config(await ha.wait_for_async(on_topic(ADA)))
            await ha.wait_for_async(on_topic("homeassistant/sensor/fs_back/present/config"))
            for entity in (present, last, tracker):
                assert entity["availability_topic"] == "fs/status/node-1"
                assert (entity["payload_available"], entity["payload_not_available"]) == (
                    "online", "offline")
            assert present["device"] == last["device"]
            assert present["device"]["identifiers"] == ["fs_front"]
            assert present["device"]["name"] == "front"
            assert present["state_topic"] == last["state_topic"] == "fs/front/state"
            assert present["unique_id"] != last["unique_id"]
            assert tracker == {**tracker, "name": "Ada", "unique_id": "fs_g1_p1",
                               "state_topic": "fs/g1/persons/p1", "source_type": "router",
                               "payload_home": "home", "payload_not_home": "not_home"}
            await settled(ha, "fs/front/state", present["value_template"], "0")

            # Ada comes: her tracker is home, the camera counts her and names her last seen.
            came = bus.publish(appeared("p1", name="Ada"))
            await settled(ha, "fs/g1/persons/p1", tracker["value_template"], "home")
            await settled(ha, "fs/front/state", present["value_template"], "1")
            await settled(ha, "fs/front/state", last["value_template"], "Ada")
            attributes = json.loads(render(tracker["json_attributes_template"],
                                           latest(ha, "fs/g1/persons/p1").payload))
            assert attributes == {"person": "p1", "camera": "front",
                                  "last_seen": wire(came)["time"]}
            # Someone unnamed comes too, on the same camera: shown by ID, no entity of theirs.
            bus.publish(appeared("p2"))
            await settled(ha, "fs/front/state", present["value_template"], "2")
            await settled(ha, "fs/front/state", last["value_template"], "p2")
            bus.publish(left("p2"))
            # Seen on a second camera, Ada leaving the first keeps her home.
            bus.publish(appeared("p1", camera="back", name="Ada"))
            bus.publish(left("p1", name="Ada"))
            await settled(ha, "fs/front/state", present["value_template"], "0")
            await settled(ha, "fs/back/state", present["value_template"], "1")
            assert render(tracker["value_template"],
                          latest(ha, "fs/g1/persons/p1").payload) == "home"
            bus.publish(left("p1", camera="back", name="Ada"))
            await settled(ha, "fs/g1/persons/p1", tracker["value_template"], "not_home")
            await settled(ha, "fs/back/state", present["value_template"], "0")

            # Naming p2 makes their entity, and their state and the camera say the name.
            bus.publish(IdentityRenamed(person="p2", name="Bo", time=time.time()))
            assert config(await ha.wait_for_async(on_topic(BO)))["name"] == "Bo"
            await settled(ha, "fs/g1/persons/p2", "{{ value_json.name }}", "Bo")
            await settled(ha, "fs/front/state", last["value_template"], "Bo")
            # Someone enrolled with a name gets an entity before any camera sees them.
            bus.publish(IdentityCreated(person="p3", name="Cy", exemplars=1, imported=None,
                                        time=time.time()))
            await ha.wait_for_async(on_topic("homeassistant/device_tracker/fs_g1/p3/config"))

            # Unnamed, forgotten: their entities go; the forgotten person's state goes too.
            bus.publish(IdentityRenamed(person="p1", name=None, time=time.time()))
            await ha.wait_for_async(lambda m: m.topic == ADA and not m.payload)
            bus.publish(IdentityDeleted(person="p2", forgotten=True, time=time.time()))
            await ha.wait_for_async(lambda m: m.topic == BO and not m.payload)
            await ha.wait_for_async(lambda m: m.topic == "fs/g1/persons/p2" and not m.payload)
            await settled(ha, "fs/front/state", last["value_template"], "None")
            assert b"Bo" not in latest(ha, "fs/front/state").payload
            assert b"Ada" not in latest(ha, "fs/g1/persons/p1").payload
            await publisher.close()
            await task
            await ha.wait_for_async(on_topic("fs/status/node-1", "offline"))

        kept = retained(mosquitto, "homeassistant/#")
        assert set(kept) == {FRONT_PRESENT, FRONT_LAST,
                             "homeassistant/sensor/fs_back/present/config",
                             "homeassistant/sensor/fs_back/last_person/config",
                             "homeassistant/device_tracker/fs_g1/p3/config"}
        assert not [topic for topic in retained(mosquitto, "fs/#") if "snapshot" in topic]

    run(scenario())


def test_entities_of_people_no_longer_named_are_removed_at_start(mosquitto: Broker) -> None:
    stale = "homeassistant/device_tracker/fs_g1/p5/config"
    other_gallery = "homeassistant/device_tracker/fs_g2/p5/config"
    with Subscriber(mosquitto, "#") as earlier:  # what an earlier run left on the broker
        for topic in (ADA, stale, other_gallery):
            earlier._client.publish(topic, json.dumps({"name": "old"}), qos=1,
                                    retain=True).wait_for_publish(5)

    async def scenario() -> None:
        publisher = new_sink(settings(mosquitto, discovery=True), people={"p1": "Ada"})
        with Subscriber(mosquitto, "homeassistant/#") as ha:
            task = start(publisher, EventBus())
            await ha.wait_for_async(lambda m: m.topic == stale and not m.payload)
            await ha.wait_for_async(lambda m: m.topic == ADA and not m.retain
                                    and m.json()["name"] == "Ada")
            await publisher.close()
            await task
        kept = retained(mosquitto, "homeassistant/#")
        assert set(kept) == {ADA, other_gallery}
        assert json.loads(kept[ADA])["name"] == "Ada"

    run(scenario())


def jpeg_size(payload: bytes) -> tuple[int, int]:
    image = Image.open(io.BytesIO(payload))
    assert image.format == "JPEG"
    return image.size


def test_snapshots_of_the_best_face_per_camera(mosquitto: Broker) -> None:
    big = np.full((120, 100, 3), 90, np.uint8)
    with Subscriber(mosquitto, "#") as earlier:  # of someone forgotten while no sink ran
        for topic, payload in (("fs/g1/persons/p6", b'{"person": "p6"}'),
                               ("fs/back/p6/snapshot", b"JPEG")):
            earlier._client.publish(topic, payload, qos=1, retain=True).wait_for_publish(5)

    async def scenario() -> None:
        bus = EventBus()
        publisher = new_sink(settings(mosquitto, snapshots=True, snapshot_retain=True),
                             cameras=["front", "back"], people={"p1": None})
        with Subscriber(mosquitto, "fs/+/+/snapshot") as live:
            task = start(publisher, bus)
            await live.wait_for_async(on_topic("fs/back/p6/snapshot", ""))
            bus.publish(appeared("p1"))
            first = await live.wait_for_async(on_topic("fs/front/p1/snapshot"))
            assert jpeg_size(first.payload) == FACE.shape[1::-1]
            bus.publish(updated("p1"))  # no better face: nothing new
            better = bus.publish(updated("p1", thumbnail=big))
            bus.publish(appeared("p1", camera="back"))
            await live.wait_for_async(on_topic("fs/back/p1/snapshot"))
            front = live.matching(on_topic("fs/front/p1/snapshot"))
            assert [jpeg_size(m.payload) for m in front] == [(40, 40), (100, 120)]
            assert better.thumbnail is big
            assert set(retained(mosquitto, "fs/+/+/snapshot")) == {"fs/front/p1/snapshot",
                                                                   "fs/back/p1/snapshot"}
            bus.publish(left("p1", thumbnail=OTHER_FACE))
            bus.publish(IdentityDeleted(person="p1", forgotten=True, time=time.time()))
            for topic in ("fs/front/p1/snapshot", "fs/back/p1/snapshot"):
                await live.wait_for_async(on_topic(topic, ""))
            assert not retained(mosquitto, "fs/+/+/snapshot")
            await publisher.close()
            await task

        unretained = new_sink(settings(mosquitto, snapshots=True))
        with Subscriber(mosquitto, "fs/+/+/snapshot") as live:
            task = start(unretained, bus)
            bus.publish(appeared("p4"))
            message = await live.wait_for_async(on_topic("fs/front/p4/snapshot"))
            assert not message.retain
        assert not retained(mosquitto, "fs/+/+/snapshot")
        await unretained.close()
        await task

    run(scenario())


@pytest.mark.slow
def test_home_assistant_sees_a_named_person_come_and_go_on_a_real_service(
        demo_video: tuple[Path, GroundTruth], mosquitto: Broker, tmp_path: Path) -> None:
    video, truth = demo_video
    gallery = tmp_path / "gallery.db"
    site = write_config(tmp_path / "site.yaml", f"""
node: hall-node
cameras:
  - name: lobby
    url: {video}
    loop: true
mqtt:
  url: {mosquitto.url}
  discovery: true
gallery:
  path: {gallery}
""")
    with Subscriber(mosquitto, "#") as ha:
        service = Service([str(site)], free_port(), env={"FACESTREAM_TOKEN": TOKEN})
        try:
            client = EventClient(f"ws://127.0.0.1:{service.port}/events?token={TOKEN}")
            live = Live(service, client, truth, gallery)
            seen = live.wait_for_face("p12", 0, 60)  # who passes through, 3 s to 9 s
            assert seen["node"] == "hall-node"
            person = seen["person"]
            with closing(sqlite3.connect(gallery)) as db:
                (gallery_id,), = db.execute("SELECT value FROM meta WHERE key = 'gallery_id'")
            tracker_topic = f"homeassistant/device_tracker/facestream_{gallery_id}/{person}/config"
            assert not ha.matching(on_topic(tracker_topic))  # unnamed: no entity
            renamed = live.ok("PATCH", f"/api/persons/{person}", {"name": "Ada"})
            assert renamed["name"] == "Ada"
            tracker = config(ha.wait_for(on_topic(tracker_topic), 10))
            assert tracker["name"] == "Ada"
            assert tracker["availability_topic"] == "facestream/status/hall-node"
            assert tracker["state_topic"] == f"facestream/{gallery_id}/persons/{person}"
            assert ha.wait_for(on_topic("facestream/status/hall-node")).text == "online"
            present = config(ha.wait_for(on_topic(
                "homeassistant/sensor/facestream_lobby/present/config")))
            assert present["state_topic"] == "facestream/lobby/state"

            # Ada's tracker goes home and away as she comes and goes in the looped video.
            mark = len(ha.messages)
            states: list[str] = []
            deadline = time.monotonic() + 90
            while states[-3:] != ["home", "not_home", "home"] and time.monotonic() < deadline:
                states = [render(tracker["value_template"], m.payload)
                          for m in ha.messages[mark:] if m.topic == tracker["state_topic"]]
                states = [s for i, s in enumerate(states) if i == 0 or states[i - 1] != s]
                time.sleep(0.2)
            assert states[-3:] == ["home", "not_home", "home"], states
            counts = {render(present["value_template"], m.payload)
                      for m in ha.messages if m.topic == "facestream/lobby/state"}
            assert {"0", "1"} <= counts
            assert service.terminate() == 0
        finally:
            service.kill()
        ha.wait_for(on_topic("facestream/status/hall-node", "offline"), 10)
    with Subscriber(mosquitto, "#") as late:
        time.sleep(0.5)
        kept = {m.topic: m for m in late.matching(lambda m: m.retain)}
    assert kept["facestream/status/hall-node"].text == "offline"
    assert render(tracker["value_template"], kept[tracker["state_topic"]].payload) == "not_home"
    assert config(kept[tracker_topic])["name"] == "Ada"
