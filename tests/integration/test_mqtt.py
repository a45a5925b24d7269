"""The MQTT publisher against a real mosquitto broker, watched by real MQTT subscribers.

Some steps call the blocking ``Broker.start()`` and open a ``Subscriber`` from inside the event
loop on purpose: the publisher shares that loop, so it cannot send anything before the subscriber
is subscribed, and the subscriber cannot miss what is sent right after a (re)connection.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from stream.config import MqttSettings
from stream.pipeline.appearances import Event, wall_time
from stream.service.bus import EventBus
from stream.service.mqtt import MqttPublisher
from tests.fixtures.mosquitto import Broker, BrokerFactory, Subscriber, on_topic

REPO = Path(__file__).resolve().parents[2]
LOGGER = "stream.service.mqtt"
FAST = {"backoff_initial_s": 0.05, "backoff_max_s": 0.2}
THUMBNAIL = "/9j/AAAA"


def settings(broker: Broker, **overrides: Any) -> MqttSettings:
    return MqttSettings.model_validate({"url": broker.url, "client_id": "facestream-test",
                                        "topic_prefix": "fs", "keepalive_s": 5, **FAST,
                                        **overrides})


def appeared(person: str, camera: str = "front", thumbnail: str = THUMBNAIL) -> Event:
    return {"type": "person.appeared", "camera": camera, "person": person, "new": True,
            "frame_time": 1.0, "captured_at": wall_time(), "box": [10.0, 20.0, 50.0, 80.0],
            "score": 0.93, "thumbnail": thumbnail, "latency_ms": 41.5}


def updated(person: str, camera: str = "front", thumbnail: str | None = None) -> Event:
    return {"type": "person.updated", "camera": camera, "person": person, "frame_time": 2.0,
            "captured_at": wall_time(), "box": [12.0, 21.0, 52.0, 81.0], "score": 0.95,
            "thumbnail": thumbnail, "latency_ms": 38.0}


def left(person: str, camera: str = "front") -> Event:
    return {"type": "person.left", "camera": camera, "person": person,
            "start": wall_time(time.time() - 5), "end": wall_time(time.time() - 3),
            "duration_s": 2.0}


def camera_status(camera: str, status: str) -> Event:
    return {"type": "camera.status", "camera": camera, "status": status, "reason": None}


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
        publisher = MqttPublisher(settings(mosquitto), bus)
        with Subscriber(mosquitto, "fs/#") as live:
            task = asyncio.create_task(publisher.run())
            await live.wait_for_async(on_topic("fs/status", "online"))
            assert publisher.connected
            sent = [bus.publish(appeared("p1")), bus.publish(updated("p1")),
                    bus.publish(camera_status("back", "reconnecting"))]
            for event in sent:
                message = await live.wait_for_async(
                    on_topic(f"fs/{event['camera']}/events", seq=event["seq"]))
                assert message.json() == event
                assert not message.retain
            await live.wait_for_async(on_topic("fs/persons/p1", seq=sent[1]["seq"]))

            with Subscriber(mosquitto, "fs/#") as late:
                state = await late.wait_for_async(on_topic("fs/persons/p1"))
                status = await late.wait_for_async(on_topic("fs/status"))
            assert state.retain
            assert state.json() == {"person": "p1", "present": True, "camera": "front",
                                    "last_event": "person.updated", "last_seen": sent[1]["time"],
                                    "thumbnail": THUMBNAIL, "seq": sent[1]["seq"]}
            assert status.retain
            assert status.text == "online"

            gone = bus.publish(left("p1"))
            await live.wait_for_async(on_topic("fs/persons/p1", seq=gone["seq"]))
            with Subscriber(mosquitto, "fs/persons/#") as late:
                state = await late.wait_for_async(on_topic("fs/persons/p1"))
            assert state.retain
            assert state.json() == {"person": "p1", "present": False, "camera": "front",
                                    "last_event": "person.left", "last_seen": gone["end"],
                                    "thumbnail": THUMBNAIL, "seq": gone["seq"]}
            assert publisher.reconnects == 0
            await publisher.close()
            await task

    run(scenario())


# A publisher in its own process, to be killed without a chance to say goodbye.
PUBLISHER_SCRIPT = """
import asyncio, sys
from stream.config import MqttSettings
from stream.service.bus import EventBus
from stream.service.mqtt import MqttPublisher
settings = MqttSettings(url=sys.argv[1], client_id="killed", topic_prefix="fs", keepalive_s=5)
asyncio.run(MqttPublisher(settings, EventBus()).run())
"""


def test_last_will_marks_a_killed_publisher_offline(mosquitto: Broker) -> None:
    with Subscriber(mosquitto, "fs/status") as live:
        process = subprocess.Popen([sys.executable, "-c", PUBLISHER_SCRIPT, mosquitto.url],
                                   cwd=REPO)
        try:
            live.wait_for(on_topic("fs/status", "online"), timeout_s=10.0)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
        live.wait_for(on_topic("fs/status", "offline"))
    with Subscriber(mosquitto, "fs/status") as late:
        status = late.wait_for(on_topic("fs/status"))
    assert (status.text, status.retain) == ("offline", True)


def test_close_sends_queued_events_then_offline(mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = MqttPublisher(settings(mosquitto), bus)
        with Subscriber(mosquitto, "fs/#") as live:
            task = asyncio.create_task(publisher.run())
            await live.wait_for_async(on_topic("fs/status", "online"))
            # Queued but not yet sent when close() is called: close() must send them first.
            queued = [bus.publish(appeared(f"p{n}", camera="door")) for n in range(5)]
            await publisher.close()
            await asyncio.wait_for(task, 1.0)  # run() returns once close() has
            assert not publisher.connected
            offline = await live.wait_for_async(on_topic("fs/status", "offline"))
            order = live.messages.index(offline)
            for event in queued:
                message = await live.wait_for_async(on_topic("fs/door/events", seq=event["seq"]))
                assert live.messages.index(message) < order
            bus.publish(appeared("p9", camera="door"))  # after close: not sent
        with Subscriber(mosquitto, "fs/#") as late:
            status = await late.wait_for_async(on_topic("fs/status"))
            assert (status.text, status.retain) == ("offline", True)
            await late.wait_for_async(on_topic("fs/persons/p4"))
            assert not late.matching(on_topic("fs/persons/p9"))

    run(scenario())


def test_broker_restart_loses_nothing(mosquitto: Broker,
                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=LOGGER)

    async def scenario() -> None:
        bus = EventBus()
        publisher = MqttPublisher(settings(mosquitto), bus)
        with Subscriber(mosquitto, "fs/#") as live:
            task = asyncio.create_task(publisher.run())
            await live.wait_for_async(on_topic("fs/status", "online"))
            quiet = bus.publish(appeared("p0", camera="back"))
            before = bus.publish(appeared("p1"))
            await live.wait_for_async(on_topic("fs/persons/p1", seq=before["seq"]))

        mosquitto.stop()
        # Published before the publisher can notice the broker is gone: it is taken from the
        # queue, its publish fails, and it must be sent again after the reconnection.
        in_flight = bus.publish(updated("p1", thumbnail="/9j/BBBB"))
        await until(lambda: not publisher.connected, "the publisher notices the broker left")
        during = bus.publish(camera_status("front", "reconnecting"))
        await asyncio.sleep(0.3)  # a few failed connection attempts

        mosquitto.start()
        with Subscriber(mosquitto, "fs/#") as after:
            for event in (in_flight, during):
                message = await after.wait_for_async(
                    on_topic(f"fs/{event['camera']}/events", seq=event["seq"]))
                assert message.json() == event
            later = bus.publish(left("p1"))
            await after.wait_for_async(on_topic("fs/front/events", seq=later["seq"]))
            await after.wait_for_async(on_topic("fs/persons/p1", seq=later["seq"]))
        assert publisher.connected
        assert publisher.reconnects == 1

        # The restarted broker kept nothing; the publisher gave it back every person's state.
        with Subscriber(mosquitto, "fs/#") as late:
            p0 = await late.wait_for_async(on_topic("fs/persons/p0"))
            p1 = await late.wait_for_async(on_topic("fs/persons/p1"))
            status = await late.wait_for_async(on_topic("fs/status"))
        assert p0.retain
        assert p0.json()["seq"] == quiet["seq"]
        assert p0.json()["present"] is True
        assert p1.json()["seq"] == later["seq"]
        assert p1.json()["present"] is False
        assert p1.json()["thumbnail"] == "/9j/BBBB"
        assert (status.text, status.retain) == ("online", True)
        await publisher.close()
        await task

    run(scenario())
    assert len(records(caplog, logging.WARNING, "unreachable")) == 1
    assert len(records(caplog, logging.INFO, "reconnected")) == 1


def test_a_full_queue_drops_the_oldest_and_says_so(mosquitto: Broker) -> None:
    async def scenario() -> None:
        bus = EventBus()
        publisher = MqttPublisher(settings(mosquitto, queue=3), bus)
        mosquitto.stop()
        task = asyncio.create_task(publisher.run())
        await until(lambda: len(bus.subscriptions) == 1, "the publisher subscribes to the bus")
        sent = [bus.publish(camera_status("front", "streaming")) for _ in range(10)]

        mosquitto.start()
        with Subscriber(mosquitto, "fs/#") as live:
            notice = await live.wait_for_async(on_topic("fs/events", type="events.dropped"))
            assert notice.json()["dropped"] == 7
            for event in sent[-3:]:
                await live.wait_for_async(on_topic("fs/front/events", seq=event["seq"]))
            received = {message.json()["seq"] for message in live.matching(
                on_topic("fs/front/events"))}
            assert received == {event["seq"] for event in sent[-3:]}
        await publisher.close()
        await task

    run(scenario())


def test_password_protected_broker(mosquitto_factory: BrokerFactory,
                                   caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger=LOGGER)
    broker = mosquitto_factory(users={"camera-hub": "s3cret"})

    async def scenario() -> None:
        bus = EventBus()
        wrong = MqttPublisher(settings(broker, client_id="wrong", topic_prefix="wrong",
                                       username="camera-hub", password="guess"), bus)
        task = asyncio.create_task(wrong.run())
        await until(lambda: len(records(caplog, logging.DEBUG, "failed")) >= 3,
                    "three failed connection attempts")
        assert not wrong.connected
        assert not task.done()
        assert "authori" in records(caplog, logging.DEBUG, "failed")[0].getMessage()
        assert len(records(caplog, logging.WARNING, "unreachable")) == 1
        await wrong.close()
        await task

        right = MqttPublisher(settings(broker, client_id="right", topic_prefix="right",
                                       username="camera-hub", password="s3cret"), bus)
        with Subscriber(broker, "#", username="camera-hub", password="s3cret") as live:
            task = asyncio.create_task(right.run())
            await live.wait_for_async(on_topic("right/status", "online"))
            assert right.connected
            event = bus.publish(appeared("p1"))
            await live.wait_for_async(on_topic("right/front/events", seq=event["seq"]))
            assert not live.matching(on_topic("wrong/status", "online"))
            await right.close()
            await task

    run(scenario())
