"""The service keeps running (the real ``facestream run`` on the demo video, looped, with its
gallery on a small file system of its own): a huge photo, a gallery change by the CLI while the
person is on camera, and a full disk never stop the model thread.

The tests share one service and run in file order; the last one fills the disk.
"""

from __future__ import annotations

import base64
import io
import re
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from PIL import Image

from benchmarks.synthetic import GroundTruth
from tests.fixtures import free_port
from tests.fixtures.disk import fill
from tests.integration.live import EventClient, Service
from tests.integration.test_rest import TOKEN, Live

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def live(demo_video: tuple[Path, GroundTruth], small_disk: Path) -> Iterator[Live]:
    video, truth = demo_video
    gallery = small_disk / "gallery.db"
    service = Service([str(video), "--loop", "--gallery", str(gallery), "--token", TOKEN],
                      free_port())
    try:
        client = EventClient(f"ws://127.0.0.1:{service.port}/events?token={TOKEN}")
        state = Live(service, client, truth, gallery)
        state.wait_for_face("p17", 0, 40)
        yield state
        client.close()
    finally:
        service.kill()


def analysed(live: Live) -> float:
    status, body = live.service.get("/metrics", TOKEN)
    assert status == 200
    found = re.search(rb'facestream_frames_analyzed_total\{camera="cam1"\} (\S+)', body)
    assert found is not None
    return float(found.group(1))


def png(width: int, height: int) -> str:
    buffer = io.BytesIO()
    Image.new("L", (width, height)).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_a_huge_photo_is_refused_before_it_is_decoded_and_analysis_goes_on(live: Live) -> None:
    bomb = png(8000, 8000)
    assert len(bomb) < 200_000  # a small upload...
    before, started = analysed(live), time.monotonic()
    status, answer = live.call("POST", "/api/persons", {"photos": [bomb]})
    assert status == 400 and "8000x8000 pixels is too large" in answer["error"]
    assert "at most 50 megapixels" in answer["error"]
    assert time.monotonic() - started < 2.0
    status, answer = live.call("POST", "/api/persons", {"photos": [png(64, 64)] * 25})
    assert status == 400 and "give 1 to 24 photos" in answer["error"]
    time.sleep(1.0)
    assert analysed(live) > before
    assert live.service.process.poll() is None


def test_a_person_deleted_by_the_cli_while_on_camera_is_reconciled(live: Live) -> None:
    person = live.current("p17")
    mark = len(live.client.events)
    deleted = subprocess.run([sys.executable, "-m", "stream", "gallery", str(live.gallery),
                              "delete", person], capture_output=True, text=True, timeout=60,
                             check=False)
    assert deleted.returncode == 0, deleted.stderr
    live.client.wait_for(lambda e: e["type"] == "person.left" and e["person"] == person, 10,
                         mark)
    again = live.wait_for_face("p17", mark, 30)
    assert again["person"] != person
    time.sleep(3.0)  # saves of the open appearances (every 2 s) ran since
    assert live.service.process.poll() is None
    assert not [line for line in live.service.log if "model thread failed" in line]
    status, health = live.call("GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["persistence_error"] is None, (
        health)


def test_a_full_disk_is_reported_and_retried_while_analysis_goes_on(live: Live) -> None:
    filler = fill(live.gallery.parent)
    try:
        deadline = time.monotonic() + 20
        health: dict[str, object] = {}
        while time.monotonic() < deadline and not health.get("persistence_error"):
            # A change needs the disk too: refused with 503 while it is full.
            status, answer = live.call("PATCH", f"/api/persons/{live.current('p17')}",
                                       {"name": "Full Disk"})
            if status == 503:
                assert "cannot be written now" in answer["error"]
            status, health = live.call("GET", "/healthz")
            time.sleep(0.5)
        assert status == 200 and "full" in str(health["persistence_error"])
        _, metrics = live.service.get("/metrics", TOKEN)
        assert b"facestream_persistence_failing 1.0" in metrics
        assert re.search(rb"facestream_persistence_failures_total [1-9]", metrics)
        mark, before = len(live.client.events), analysed(live)
        live.client.wait_for(lambda e: e["type"] in ("person.updated", "person.appeared"), 20,
                             mark)
        assert analysed(live) > before
    finally:
        filler.unlink()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and health.get("persistence_error"):
        time.sleep(0.5)
        _, health = live.call("GET", "/healthz")
    assert health["persistence_error"] is None, health
    person = live.current("p17")
    renamed = live.ok("PATCH", f"/api/persons/{person}", {"name": "Disk Freed"})
    assert renamed["name"] == "Disk Freed"
    assert live.service.terminate() == 0
    with closing(sqlite3.connect(live.gallery)) as check:
        assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert check.execute("PRAGMA foreign_key_check").fetchall() == []
