"""`facestream analyze` end to end on generated videos of real faces, whole and damaged
(bad input, which needs no model, is in test_cli_errors.py)."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np
import pytest

from benchmarks.scoring import score
from benchmarks.synthetic import PERSONS, GroundTruth, make_sprite
from stream.cli import main
from tests.media import write_video


@pytest.fixture(scope="module")
def demo_report(demo_video: tuple[Path, GroundTruth], tmp_path_factory: pytest.TempPathFactory
                ) -> Path:
    out = tmp_path_factory.mktemp("demo") / "report"
    assert main(["-q", "analyze", str(demo_video[0]), "--out", str(out)]) == 0
    return out


def test_demo_people_ids_and_times(demo_report: Path, demo_video: tuple[Path, GroundTruth]
                                   ) -> None:
    scores = score(demo_report, demo_video[1])
    assert scores.found_persons == scores.true_persons == 3
    assert scores.passed, scores.failures()


def test_report_contract(demo_report: Path, demo_video: tuple[Path, GroundTruth]) -> None:
    report = json.loads((demo_report / "report.json").read_text())
    assert report["schema"] == "facestream.report/1" and report["complete"] is True
    assert report["embedder"]["name"] == "dlib-resnet" and report["embedder"]["version"]
    assert report["frames_decoded"] == len(demo_video[1].frames)
    assert 0 < report["frames_analyzed"] < report["frames_decoded"]
    firsts = [p["first_seen_s"] for p in report["persons"]]
    assert firsts == sorted(firsts)
    for person in report["persons"]:
        assert (demo_report / person["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
        spans = person["appearances"]
        assert person["total_visible_s"] == pytest.approx(
            sum(a["end_s"] - a["start_s"] for a in spans), abs=0.01)
    ids = {p["id"] for p in report["persons"]}
    lines = [json.loads(x) for x in (demo_report / "detections.jsonl").read_text().splitlines()]
    assert {line["person"] for line in lines} - {None} == ids
    assert all(len(line["box"]) == 4 and 0 <= line["score"] <= 1 for line in lines)
    page = (demo_report / "index.html").read_text()
    assert all(f"<h2>{pid}</h2>" in page for pid in ids)


def test_report_shares_and_appearances(demo_report: Path) -> None:
    report = json.loads((demo_report / "report.json").read_text())
    appearances = [a for person in report["persons"] for a in person["appearances"]]
    assert len({a["appearance"] for a in appearances}) == len(appearances)
    for appearance in appearances:
        assert appearance["appearance"].startswith("file-")
        assert appearance["thumbnail"] == f"appearances/{appearance['appearance']}.jpg"
        assert (demo_report / appearance["thumbnail"]).read_bytes()[:2] == b"\xff\xd8"
    for person in report["persons"]:
        assert person["name"] is None  # no gallery: nobody has a name
        assert person["share"] == pytest.approx(
            person["total_visible_s"] / report["duration_s"], abs=1e-3)
    # p17 of the demo is on screen all the time, the others part of it
    assert max(person["share"] for person in report["persons"]) > 0.9
    assert min(person["share"] for person in report["persons"]) < 0.6


@pytest.fixture(scope="module")
def named_report(demo_video: tuple[Path, GroundTruth], tmp_path_factory: pytest.TempPathFactory
                 ) -> Path:
    """The demo analysed against a gallery where the woman of the demo is enrolled as Ada."""
    directory = tmp_path_factory.mktemp("named")
    photo, gallery = directory / "ada.jpg", directory / "gallery.db"
    make_sprite(PERSONS["p03"][0]).image.convert("RGB").save(photo)
    assert main(["-q", "enroll", "--gallery", str(gallery), "--name", "Ada", str(photo)]) == 0
    out = directory / "report"
    assert main(["-q", "analyze", str(demo_video[0]), "--out", str(out), "--gallery",
                 str(gallery)]) == 0
    return out


def test_an_enrolled_person_is_reported_by_name(named_report: Path) -> None:
    report = json.loads((named_report / "report.json").read_text())
    names = {person["id"]: person["name"] for person in report["persons"]}
    assert names.pop("p1") == "Ada" and set(names.values()) == {None}
    page = (named_report / "index.html").read_text()
    assert "<h2>Ada (p1)</h2>" in page


def test_video_without_faces(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [np.full((180, 320, 3), 40 + i, np.uint8) for i in range(50)]
    video = write_video(tmp_path / "empty.mp4", frames)
    out = tmp_path / "out"
    assert main(["-q", "analyze", str(video), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["persons"] == [] and report["frames_decoded"] == 50
    assert (out / "detections.jsonl").read_text() == ""
    assert "0 people" in capsys.readouterr().out


def remux(source: Path, target: Path) -> Path:
    with av.open(str(source)) as src, av.open(str(target), "w") as dst:
        stream = dst.add_stream_from_template(src.streams.video[0])
        for packet in src.demux(src.streams.video[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    return target


def test_truncated_video_reports_what_decoded(demo_video: tuple[Path, GroundTruth],
                                              tmp_path: Path) -> None:
    whole = remux(demo_video[0], tmp_path / "whole.mkv")
    data = whole.read_bytes()
    cut = tmp_path / "cut.mkv"
    cut.write_bytes(data[: len(data) // 2])
    out = tmp_path / "out"
    assert main(["-q", "analyze", str(cut), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert 0 < report["frames_decoded"] < len(demo_video[1].frames)
    assert report["duration_s"] < 10.0
    assert report["persons"]


def test_corrupt_middle_is_flagged_incomplete(demo_video: tuple[Path, GroundTruth],
                                              tmp_path: Path) -> None:
    data = bytearray(remux(demo_video[0], tmp_path / "whole.mkv").read_bytes())
    middle = len(data) // 2
    data[middle: middle + 20000] = bytes(20000)
    broken = tmp_path / "broken.mkv"
    broken.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main(["-q", "analyze", str(broken), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["complete"] is False and report["problems"]
    assert "damaged" in (out / "index.html").read_text()
