"""``facestream run`` end to end: real cameras (a file played live, a GStreamer RTSP server),
real WebSocket clients, a real mosquitto broker, real signals."""

from __future__ import annotations

import base64
import io
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.synthetic import GroundTruth
from tests.fixtures import free_port
from tests.fixtures.mosquitto import Broker, Subscriber, on_topic
from tests.fixtures.rtsp import RtspServer
from tests.integration.live import EventClient, Service, write_config

pytestmark = pytest.mark.slow


def appeared(event: dict[str, object]) -> bool:
    return event["type"] == "person.appeared"


def test_file_camera_events_reach_websocket_and_mqtt_and_sigterm_closes_in_order(
        demo_video: tuple[Path, GroundTruth], mosquitto: Broker) -> None:
    video, _ = demo_video
    port = free_port()
    with Subscriber(mosquitto, "facestream/#") as mqtt:
        service = Service([f"lobby={video}", "--mqtt", mosquitto.url, "--sample-fps", "5"],
                          port)
        try:
            client = EventClient(f"ws://127.0.0.1:{port}/events?replay=50")
            first = client.wait_for(appeared, 40)
            second = client.wait_for(lambda e: appeared(e) and e["person"] != first["person"],
                                     20)
            status, body = service.get("/healthz")
            assert status == 200 and b'"lobby":"streaming"' in body
            status, body = service.get("/metrics")
            assert status == 200
            metrics = body.decode()
            assert 'facestream_frames_analyzed_total{camera="lobby"}' in metrics
            assert "facestream_event_latency_seconds_bucket" in metrics
            assert "facestream_mqtt_connected 1.0" in metrics
            assert 'facestream_event_queue_depth{consumer="mqtt"}' in metrics
            assert 'facestream_camera_state{camera="lobby",state="streaming"} 1.0' in metrics
            assert service.terminate() == 0
        finally:
            service.kill()
        client.closed.wait(10)
        events = client.events
        assert [e["seq"] for e in events] == sorted(e["seq"] for e in events)
        assert all(e["schema"] == "facestream.event/1" for e in events)
        assert events[0] == {**events[0], "type": "camera.status", "camera": "lobby",
                             "status": "streaming"}
        for event in (first, second):
            assert event["camera"] == "lobby" and event["new"] is True
            assert event["latency_ms"] >= 0 and len(event["box"]) == 4
            thumbnail = Image.open(io.BytesIO(base64.b64decode(event["thumbnail"])))
            assert thumbnail.format == "JPEG" and thumbnail.size == (96, 96)
        # The ordered shutdown: the camera stops, then every open appearance is closed.
        stopped = next(i for i, e in enumerate(events) if e.get("status") == "stopped")
        left = {e["person"]: e for e in events[stopped:] if e["type"] == "person.left"}
        assert {first["person"], second["person"]} <= set(left)
        assert all(e["duration_s"] > 0 and e["start"] <= e["end"] for e in left.values())
        # The same events went to MQTT, and each person's last state is retained.
        on_mqtt = [m.json()["seq"] for m in mqtt.matching(lambda m: m.topic ==
                                                          "facestream/lobby/events")]
        assert on_mqtt == [e["seq"] for e in events if e.get("camera") == "lobby"]
        mqtt.wait_for(on_topic(f"facestream/status/{first['node']}", "offline"), 10)
    with Subscriber(mosquitto, "facestream/#") as late:
        state = late.wait_for(lambda m: m.topic.endswith(f"/persons/{first['person']}"), 10)
        assert state.retain and state.json()["present"] is False
        status_message = late.wait_for(on_topic(f"facestream/status/{first['node']}"), 10)
        assert status_message.retain and status_message.text == "offline"


def test_rtsp_camera_that_vanishes_is_reconnected_and_people_keep_their_ids(
        demo_video: tuple[Path, GroundTruth], tmp_path: Path,
        rtsp_server_factory: Callable[[Path], RtspServer]) -> None:
    video, _ = demo_video
    camera = rtsp_server_factory(video)
    config = write_config(tmp_path / "site.yaml", f"""
cameras:
  - name: door
    url: {camera.url}
    sample_fps: 5
sources:
  read_timeout_s: 2
  backoff_initial_s: 0.5
  backoff_max_s: 2
events:
  left_after_s: 1.0
""")
    port = free_port()
    service = Service([str(config)], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=20")
        client.wait_for(lambda e: e.get("status") == "streaming", 30)
        before = client.wait_for(appeared, 40)
        camera.stop()
        lost = client.wait_for(lambda e: e.get("status") == "reconnecting", 20)
        assert lost["camera"] == "door" and lost["reason"]
        client.wait_for(lambda e: e["type"] == "person.left" and e["person"] ==
                        before["person"], 20)
        mark = len(client.events)
        camera.start()
        client.wait_for(lambda e: e.get("status") == "streaming", 30, after=mark)
        again = client.wait_for(lambda e: appeared(e) and e["person"] == before["person"], 40,
                                after=mark)
        assert again["new"] is False
        assert not [e for e in client.events[mark:] if appeared(e) and e["new"]], (
            "a person seen before the outage was given a new ID after it")
        assert service.terminate() == 0
    finally:
        service.kill()


def test_bad_sources_are_reported_and_the_good_camera_keeps_working(
        demo_video: tuple[Path, GroundTruth], tmp_path: Path) -> None:
    video, _ = demo_video
    text = tmp_path / "notes.txt"
    text.write_text("not a video")
    closed = free_port()
    port = free_port()
    service = Service([f"good={video}", f"text={text}", f"gone=rtsp://127.0.0.1:{closed}/x"],
                      port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=20")
        failed = client.wait_for(lambda e: e.get("camera") == "text" and
                                 e.get("status") == "failed", 20)
        assert "not a video" in failed["reason"] or "video" in failed["reason"]
        retry = client.wait_for(lambda e: e.get("camera") == "gone" and
                                e.get("status") == "reconnecting", 30)
        assert retry["retry_in_s"] > 0
        client.wait_for(lambda e: appeared(e) and e["camera"] == "good", 40)
        status, body = service.get("/healthz")
        assert status == 200 and b'"gone":"reconnecting"' in body
        assert service.terminate() == 0
    finally:
        service.kill()
    assert not [line for line in service.log if "Traceback" in line]


@pytest.mark.parametrize(("args", "message"), [
    (["ftp://example.com/cam"], "unsupported source 'ftp://example.com/cam'"),
    (["cam.mp4", "--port", "70000"], "server.port"),
])
def test_unusable_arguments_are_one_line_and_exit_2(args: list[str], message: str) -> None:
    result = subprocess.run([sys.executable, "-m", "stream", "run", *args],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 2
    assert message in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_sigint_also_stops_cleanly(demo_video: tuple[Path, GroundTruth]) -> None:
    video, _ = demo_video
    port = free_port()
    service = Service([str(video), "--loop"], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=20")
        client.wait_for(lambda e: e.get("status") == "streaming", 30)
        service.process.send_signal(signal.SIGINT)
        assert service.process.wait(60) == 0
    finally:
        service.kill()
    service.wait_for_log("stopped", 5)


def test_one_person_on_two_cameras_has_one_id(demo_video: tuple[Path, GroundTruth]) -> None:
    video, truth = demo_video
    port = free_port()
    service = Service([f"east={video}", f"west={video}"], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=50")
        client.wait_for(lambda e: e.get("status") == "stopped" and e["camera"] == "east", 60)
        client.wait_for(lambda e: e.get("status") == "stopped" and e["camera"] == "west", 30)
        assert service.process.wait(30) == 0  # every camera ended: the service exits
    finally:
        service.kill()
    people = {camera: {e["person"] for e in client.of_type("person.appeared")
                       if e["camera"] == camera} for camera in ("east", "west")}
    assert people["east"] == people["west"]
    assert len(people["east"]) == len(truth.persons)
    created = [e["person"] for e in client.of_type("person.appeared") if e["new"]]
    assert sorted(created) == sorted(people["east"]), "an ID was created twice"
