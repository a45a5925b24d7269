"""A gallery that outlives the process: killed with SIGKILL mid-run, it opens cleanly and the
same people keep their IDs, on a camera and in a file."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.synthetic import GroundTruth
from tests.fixtures import free_port
from tests.integration.live import EventClient, Service

pytestmark = pytest.mark.slow


def test_sigkill_mid_run_loses_nothing_and_ids_survive_a_restart(
        demo_video: tuple[Path, GroundTruth], tmp_path: Path) -> None:
    video, truth = demo_video
    gallery = tmp_path / "gallery.db"
    port = free_port()
    service = Service([f"door={video}", "--loop", "--gallery", str(gallery)], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=50")
        client.wait_for(lambda e: e["type"] == "person.appeared" and e["person"] == "p3", 60)
        # Open appearances are written every 2 s; give the writer a moment, then kill.
        client.wait_for(lambda e: e["type"] == "person.updated", 30)
        service.process.kill()
        service.process.wait(10)
    finally:
        service.kill()
    first = {e["person"] for e in client.of_type("person.appeared")}
    assert len(first) == len(truth.persons)

    with sqlite3.connect(gallery) as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        people = {f"p{row[0]}" for row in db.execute("SELECT id FROM identities")}
        spans = db.execute("SELECT identity, start, end FROM appearances").fetchall()
    assert people == first
    assert spans and all(end > start for _, start, end in spans)  # open ones were saved

    port = free_port()
    service = Service([f"door={video}", "--gallery", str(gallery)], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=50")
        client.wait_for(lambda e: e.get("status") == "stopped", 60)
        assert service.process.wait(30) == 0
    finally:
        service.kill()
    again = client.of_type("person.appeared")
    assert {e["person"] for e in again} == first
    assert not [e for e in again if e["new"]], "a known person got a new ID after the restart"

    # The file pipeline uses the same gallery: the same people, the same IDs.
    out = tmp_path / "report"
    result = subprocess.run([sys.executable, "-m", "stream", "-q", "analyze", str(video),
                             "--out", str(out), "--gallery", str(gallery)],
                            capture_output=True, text=True, timeout=300, check=False)
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert {person["id"] for person in report["persons"]} == first
