"""The file report: spans, the document, atomic writing and the page."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream.errors import OutputError
from stream.report import (
    Appearance,
    Detection,
    Person,
    join_appearances,
    merge_spans,
    prepare_output,
    report_document,
    write_report,
)

FACE = np.full((40, 40, 3), 128, np.uint8)


def seen(*spans: tuple[float, float]) -> list[Appearance]:
    """Appearances over ``spans`` (IDs a0, a1, ...), of faces of quality 1."""
    return [Appearance(f"a{i}", start, end, FACE, 1.0) for i, (start, end) in enumerate(spans)]


def test_merge_spans_joins_short_gaps_only() -> None:
    spans = [(5.0, 6.0), (0.0, 1.0), (1.4, 2.0), (3.0, 4.0)]
    assert merge_spans(spans, 0.5) == [(0.0, 2.0), (3.0, 4.0), (5.0, 6.0)]
    assert merge_spans(spans, 1.0) == [(0.0, 6.0)]
    assert merge_spans([], 1.0) == []


def document(persons: list[Person], problems: list[str] | None = None) -> dict[str, Any]:
    return report_document(source=Path("v.mp4"), duration_s=10.0, fps=25.0, frames_decoded=250,
                           frames_analyzed=100, embedder=("dlib-resnet", "v1"),
                           persons=persons, problems=problems or [])


def test_document_orders_persons_by_first_appearance() -> None:
    late = Person("p1", "Ada", seen((4.0, 5.0), (7.0, 8.5)), 20, FACE)
    early = Person("p2", None, seen((1.0, 2.0)), 10, FACE)
    doc = document([late, early])
    assert [p["id"] for p in doc["persons"]] == ["p2", "p1"]
    first = doc["persons"][1]
    assert first["total_visible_s"] == 2.5 and first["last_seen_s"] == 8.5
    assert first["thumbnail"] == "persons/p1.jpg"
    assert doc["schema"] == "facestream.report/1" and doc["complete"] is True
    assert (first["name"], first["share"]) == ("Ada", 0.25)  # 2.5 s of 10 s
    assert doc["persons"][0]["name"] is None
    assert first["appearances"] == [
        {"appearance": "a0", "start_s": 4.0, "end_s": 5.0, "thumbnail": "appearances/a0.jpg"},
        {"appearance": "a1", "start_s": 7.0, "end_s": 8.5, "thumbnail": "appearances/a1.jpg"}]


def test_overlapping_appearances_are_one_and_counted_once() -> None:
    better = np.full((40, 40, 3), 250, np.uint8)
    parts = [Appearance("b", 3.0, 6.0, better, 2.0), *seen((1.0, 4.0), (6.0, 7.0), (8.0, 9.0))]
    joined = join_appearances(parts)
    assert [(a.id, a.start_s, a.end_s) for a in joined] == [("a0", 1.0, 7.0), ("a2", 8.0, 9.0)]
    assert joined[0].thumbnail is better  # the better face of those joined
    person = document([Person("p1", None, joined, 5, FACE)])["persons"][0]
    assert person["total_visible_s"] == 7.0 and person["share"] == 0.7


def test_write_report_files_and_page(tmp_path: Path) -> None:
    out = tmp_path / "out"
    prepare_output(out)
    persons = [Person("p1", "Ada <3", seen((1.0, 2.0)), 1, FACE),
               Person("p2", None, seen((3.0, 4.0)), 1, FACE)]
    detections = [Detection(3, 0.3, (1.0, 2.0, 3.0, 4.0), 0.99, "p1"),
                  Detection(3, 0.3, (5.0, 6.0, 7.0, 8.0), 0.91, None)]
    write_report(out, document(persons, ["decode error after frame 7"]), detections, persons)
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False and report["persons"][0]["id"] == "p1"
    lines = [json.loads(line) for line in (out / "detections.jsonl").read_text().splitlines()]
    assert lines[1] == {"frame": 3, "t": 0.3, "box": [5.0, 6.0, 7.0, 8.0], "score": 0.91,
                        "person": None}
    assert (out / "persons" / "p1.jpg").read_bytes()[:2] == b"\xff\xd8"
    for person in report["persons"]:
        assert (out / person["appearances"][0]["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
    page = (out / "index.html").read_text()
    assert "data:image/jpeg;base64," in page and "damaged" in page and 'class="bar"' in page
    assert "<h2>Ada &lt;3 (p1)</h2>" in page and "<h2>p2</h2>" in page
    assert "(10 % of the video)" in page
    assert not list(out.glob("*.partial"))


def test_prepare_output_removes_a_stale_report(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("{}")
    prepare_output(tmp_path)
    assert not (tmp_path / "report.json").exists()


def test_prepare_output_refuses_a_file(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(OutputError, match="not a directory"):
        prepare_output(target)
    with pytest.raises(OutputError, match="cannot write"):
        prepare_output(target / "below")
