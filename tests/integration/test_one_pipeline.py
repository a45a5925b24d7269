"""One pipeline: a video through ``facestream analyze`` as decided online (``--no-refine``: its
report without the second look at the whole video) and through ``facestream run`` (the file
played as a camera, handed over losslessly) gives the same people at the same times."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.synthetic import GroundTruth, build
from stream.cli import main
from tests.fixtures import free_port
from tests.integration.live import EventClient, Service

pytestmark = pytest.mark.slow
SAMPLE_FPS = 10.0


@pytest.fixture(scope="module")
def cuts_video(videos: Path) -> tuple[Path, GroundTruth]:
    """Three people, two shot cuts; one leaves at the first cut and is back at the second."""
    return build("cuts", videos)


Spans = dict[str, list[tuple[float, float]]]


def report_spans(out: Path) -> tuple[Spans, float]:
    report = json.loads((out / "report.json").read_text())
    spans = {person["id"]: [(a["start_s"], a["end_s"]) for a in person["appearances"]]
             for person in report["persons"]}
    return spans, float(report["duration_s"])


def test_analyze_and_run_find_the_same_people_at_the_same_times(
        cuts_video: tuple[Path, GroundTruth], tmp_path: Path) -> None:
    video, truth = cuts_video
    out = tmp_path / "report"
    assert main(["-q", "analyze", str(video), "--out", str(out), "--no-refine",
                 "--sample-fps", str(SAMPLE_FPS)]) == 0
    from_file, duration = report_spans(out)

    port = free_port()
    service = Service([f"show={video}", "--no-realtime", "--no-drop", "--sample-fps",
                       str(SAMPLE_FPS)], port)
    try:
        client = EventClient(f"ws://127.0.0.1:{port}/events?replay=100")
        assert service.process.wait(180) == 0  # the file ended: the service stops by itself
    finally:
        service.kill()
    client.closed.wait(10)
    assert not any(e["type"] == "events.dropped" for e in client.events)
    live: Spans = {}
    half = 0.5 / SAMPLE_FPS  # the report widens each appearance by half a sampling step
    for event in client.of_type("person.left"):
        assert event["camera"] == "show"
        live.setdefault(event["person"], []).append(
            (round(max(0.0, event["start_frame_time"] - half), 3),
             round(min(duration, event["end_frame_time"] + half), 3)))
    live = {person: sorted(spans) for person, spans in live.items()}

    assert len(from_file) == len(truth.persons) == 3
    assert any(len(spans) == 2 for spans in from_file.values())  # the leave-and-return
    assert live.keys() == from_file.keys()
    for person, spans in from_file.items():
        assert len(live[person]) == len(spans), person
        flat = [t for span in spans for t in span]
        assert [t for span in live[person] for t in span] == pytest.approx(flat, abs=2e-3)
