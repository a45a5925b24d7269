"""Forget means gone: on the real service (the demo video looped, a gallery file, a real
mosquitto broker, real WebSocket clients), a person seen on camera and a person enrolled from a
photo are forgotten while another program holds a read transaction on the gallery; then
nothing of them (face crops, embeddings, names) is left in the database file, its write-ahead
log, the broker's retained messages, the replay buffer or the temporary folder.
"""

from __future__ import annotations

import base64
import io
import json
import sqlite3
import time
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from tests.fixtures import free_port
from tests.fixtures.mosquitto import Broker, Subscriber
from tests.integration.live import EventClient, Service
from tests.integration.test_rest import TOKEN, Live
from tests.unit.test_gallery_store import files_of

pytestmark = pytest.mark.slow
SEEN_NAME, ENROLLED_NAME = "Zelda Seen-Forgotten", "Ynes Enrolled-Forgotten"


def secrets(gallery: Path, person: str) -> list[bytes]:
    """What the gallery holds of ``person``: each exemplar's face and vector bytes."""
    with closing(sqlite3.connect(gallery)) as db:
        rows = db.execute("SELECT face, vector FROM exemplars WHERE identity = ?",
                          (int(person[1:]),)).fetchall()
    assert rows, f"{person} has no exemplars"
    return [bytes(blob) for row in rows for blob in row if blob]


def retained(broker: Broker) -> dict[str, bytes]:
    with Subscriber(broker, "facestream/#") as late:
        time.sleep(0.5)  # retained messages come right after the subscription
        return {m.topic: m.payload for m in late.matching(lambda m: m.retain)}


def test_forgotten_people_leave_nothing_behind(
        demo_video: tuple[Path, GroundTruth], mosquitto: Broker, tmp_path: Path) -> None:
    video, truth = demo_video
    gallery, temp = tmp_path / "gallery.db", tmp_path / "tmp"
    temp.mkdir()
    service = Service([str(video), "--loop", "--gallery", str(gallery), "--token", TOKEN,
                       "--mqtt", mosquitto.url], free_port(), env={"TMPDIR": str(temp)})
    try:
        client = EventClient(f"ws://127.0.0.1:{service.port}/events?replay=100&token={TOKEN}")
        live = Live(service, client, truth, gallery)
        seen = live.wait_for_face("p17", 0, 40)["person"]
        live.ok("PATCH", f"/api/persons/{seen}", {"name": SEEN_NAME})
        photo = make_sprite(PERSONS["p08"][0]).image.convert("RGB")
        status, created = live.call("POST", "/api/persons", {
            "name": ENROLLED_NAME, "photos": [_base64_jpeg(photo)]})
        assert status == 201, created
        enrolled = created["person"]
        client.wait_for(lambda e: e["type"] == "person.updated" and e["person"] == seen, 20)
        assert [t for t in retained(mosquitto) if t.endswith(f"/persons/{seen}")]
        kept = {person: secrets(gallery, person) for person in (seen, enrolled)}

        with closing(sqlite3.connect(gallery, isolation_level=None)) as reader:
            reader.execute("BEGIN")  # another program reading the gallery meanwhile
            reader.execute("SELECT COUNT(*) FROM exemplars").fetchone()
            for person in (seen, enrolled):
                forgotten = live.ok("POST", f"/api/persons/{person}/forget")
                assert forgotten == {**forgotten, "type": "identity.deleted", "forgotten": True}
            reader.execute("COMMIT")
        # The service finishes the erasure the reader held up (it looks every second).
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(
                secret in files_of(gallery) for blobs in kept.values() for secret in blobs):
            time.sleep(0.2)

        contents = files_of(gallery)
        for person, blobs in kept.items():
            assert [secret in contents for secret in blobs] == [False] * len(blobs), person
        assert SEEN_NAME.encode() not in contents and ENROLLED_NAME.encode() not in contents

        on_broker = retained(mosquitto)
        assert not [t for t in on_broker for p in (seen, enrolled) if t.endswith(f"/persons/{p}")]
        assert not [t for t, payload in on_broker.items() if SEEN_NAME.encode() in payload]

        newcomer = EventClient(f"ws://127.0.0.1:{service.port}/events?replay=100&token={TOKEN}")
        time.sleep(1.0)
        replayed = json.dumps(newcomer.events)
        about = [e for e in newcomer.events if {seen, enrolled} & {e.get("person"),
                                                                   e.get("merged")}]
        assert [e["type"] for e in about] == ["identity.deleted", "identity.deleted"]
        assert SEEN_NAME not in replayed and ENROLLED_NAME not in replayed
        newcomer.close()

        left = [path.name for path in temp.rglob("*")]
        assert not [name for name in left if "facestream" in name], left
        for path in temp.rglob("*"):
            if path.is_file():
                assert ENROLLED_NAME.encode() not in path.read_bytes()
        assert service.get("/healthz", TOKEN)[0] == 200
        client.close()
        assert service.terminate() == 0
    finally:
        service.kill()


def _base64_jpeg(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG")
    return base64.b64encode(buffer.getvalue()).decode()
