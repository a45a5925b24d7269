"""Scoring of analyze outputs against ground truth, on tiny hand-made truth and outputs."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from benchmarks.scoring import (
    bcubed,
    interval_iou,
    merge_intervals,
    score,
)
from benchmarks.speed import cpu_ticks, stolen
from benchmarks.synthetic import Box, FrameTruth, GroundTruth, TruthFace, load_truth, truth_path
from stream.identity.track import box_iou

FPS = 10.0
FRAMES = 40
BOXES: dict[str, Box] = {
    "A": (10.0, 10.0, 50.0, 60.0),
    "B": (100.0, 10.0, 140.0, 60.0),
    "C": (200.0, 10.0, 240.0, 60.0),
}
# A: whole video; B: 0-1.5 s and 3-4 s (gap over 1 s, so two appearances); C: 2-4 s.
VISIBLE: dict[str, Callable[[int], bool]] = {
    "A": lambda i: True,
    "B": lambda i: i < 15 or i >= 30,
    "C": lambda i: i >= 20,
}

Labeller = Callable[[int, str], str | None]


def make_truth() -> GroundTruth:
    frames = tuple(
        FrameTruth(
            index=i,
            t=i / FPS,
            faces=tuple(TruthFace(p, BOXES[p]) for p in sorted(BOXES) if VISIBLE[p](i)),
        )
        for i in range(FRAMES)
    )
    return GroundTruth("tiny", 320, 240, FPS, frames)


def identity(frame: int, person: str) -> str | None:
    return f"id-{person}"


def write_output(
    out: Path,
    truth: GroundTruth,
    label: Labeller = identity,
    *,
    frames: Callable[[int], bool] = lambda i: True,
    shift: float = 1.0,
    extra: list[dict[str, object]] | None = None,
    appearances: dict[str, list[tuple[float, float]]] | None = None,
    frames_analyzed: int = FRAMES,
) -> Path:
    """Write report.json and detections.jsonl as the product would, from the truth.

    Boxes are shifted by ``shift`` px; appearances default to the frames each id was detected on,
    with gaps under 1 s merged.
    """
    out.mkdir(parents=True, exist_ok=True)
    lines: list[dict[str, object]] = []
    seen: dict[str, list[tuple[float, float]]] = {}
    for frame in truth.frames:
        if not frames(frame.index):
            continue
        for face in frame.faces:
            person = label(frame.index, face.person)
            box = [v + shift for v in face.box]
            lines.append({"frame": frame.index, "t": frame.t, "box": box, "score": 0.99,
                          "person": person})
            if person is not None:
                step = 1 / truth.fps
                seen.setdefault(person, []).append((frame.t, frame.t + step))
    lines.extend(extra or [])
    spans = appearances or {pid: merge_intervals(items, 1.0) for pid, items in seen.items()}
    report = {
        "schema": "facestream.report/1",
        "source": "tiny.mp4",
        "duration_s": FRAMES / FPS,
        "fps": FPS,
        "frames_decoded": FRAMES,
        "frames_analyzed": frames_analyzed,
        "embedder": {"name": "fake", "version": "0"},
        "persons": [
            {
                "id": pid,
                "first_seen_s": items[0][0],
                "last_seen_s": items[-1][1],
                "total_visible_s": sum(b - a for a, b in items),
                "appearances": [{"start_s": a, "end_s": b} for a, b in items],
                "thumbnail": f"{pid}.jpg",
                "detections": 0,
            }
            for pid, items in sorted(spans.items())
        ],
    }
    (out / "report.json").write_text(json.dumps(report))
    (out / "detections.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    return out


def test_truth_intervals_merge_short_gaps_only() -> None:
    truth = make_truth()
    assert truth.persons == ("A", "B", "C")
    assert truth.intervals("A") == [(0.0, 4.0)]
    assert truth.intervals("B") == [(0.0, 1.5), (3.0, 4.0)]
    assert truth.intervals("B", merge_gap=2.0) == [(0.0, 4.0)]
    assert truth.intervals("C") == [(2.0, 4.0)]


def test_truth_round_trips_through_json(tmp_path: Path) -> None:
    truth = make_truth()
    video = tmp_path / "tiny.mp4"
    truth_path(video).write_text(json.dumps(truth.to_json()))
    assert load_truth(video) == truth
    assert load_truth(truth_path(video)) == truth


def test_box_iou() -> None:
    assert box_iou((0, 0, 10, 10), (0, 0, 10, 10)) == pytest.approx(1.0)
    assert box_iou((0, 0, 10, 10), (5, 0, 15, 10)) == pytest.approx(50 / 150)
    assert box_iou((0, 0, 10, 10), (20, 20, 30, 30)) == 0.0


def test_bcubed_known_values() -> None:
    assert bcubed([("x", "a"), ("y", "b")]) == (1.0, 1.0, 1.0)
    precision, recall, f = bcubed([("x", "a"), ("x", "a"), ("x", "b")])
    assert precision == pytest.approx(5 / 9)
    assert recall == pytest.approx(1.0)
    assert f == pytest.approx(2 * (5 / 9) / (5 / 9 + 1))
    precision, recall, _ = bcubed([("x", "a"), ("y", "a")])
    assert precision == pytest.approx(1.0)
    assert recall == pytest.approx(0.5)
    assert bcubed([]) == (0.0, 0.0, 0.0)


def test_interval_iou() -> None:
    assert interval_iou([(0, 4)], [(0, 4)]) == pytest.approx(1.0)
    assert interval_iou([(0, 2)], [(0, 4)]) == pytest.approx(0.5)
    assert interval_iou([(0, 1), (3, 4)], [(0, 4)]) == pytest.approx(0.5)
    assert interval_iou([(0, 1)], [(2, 3)]) == 0.0
    assert interval_iou([], [(2, 3)]) == 0.0


def test_perfect_output_passes(tmp_path: Path) -> None:
    truth = make_truth()
    scores = score(write_output(tmp_path / "out", truth), truth)
    assert scores.passed, scores.failures()
    assert (scores.true_persons, scores.found_persons) == (3, 3)
    assert (scores.precision, scores.recall, scores.f) == (1.0, 1.0, 1.0)
    assert scores.min_time_iou == pytest.approx(1.0)
    assert scores.assignment == {"A": "id-A", "B": "id-B", "C": "id-C"}
    assert scores.truth_faces == scores.matched == 40 + 25 + 20
    assert scores.false_positives == scores.missed == 0
    assert scores.row()[-1] == "pass"
    assert len(scores.row()) == len(scores.HEADER)


def test_split_person_lowers_recall_and_changes_count(tmp_path: Path) -> None:
    truth = make_truth()

    def split_b(frame: int, person: str) -> str:
        return "id-B2" if person == "B" and frame >= 30 else f"id-{person}"

    scores = score(write_output(tmp_path / "out", truth, split_b), truth)
    assert scores.found_persons == 4
    assert scores.precision == pytest.approx(1.0)
    assert scores.recall < 0.9
    assert scores.f < 0.99
    assert scores.time_iou["B"] < 0.95
    assert not scores.passed
    assert scores.row()[-1] == "FAIL"


def test_merged_pair_lowers_precision(tmp_path: Path) -> None:
    truth = make_truth()

    def merge_c_into_a(frame: int, person: str) -> str:
        return "id-A" if person == "C" else f"id-{person}"

    scores = score(write_output(tmp_path / "out", truth, merge_c_into_a), truth)
    assert scores.found_persons == 2
    assert scores.recall == pytest.approx(1.0)
    assert scores.precision < 0.9
    assert scores.assignment["C"] == "id-A"
    assert scores.time_iou["C"] == pytest.approx(0.5)
    assert not scores.passed


def test_appearance_cut_short_lowers_time_iou(tmp_path: Path) -> None:
    truth = make_truth()
    appearances = {"id-A": [(0.0, 2.0)], "id-B": [(0.0, 1.5), (3.0, 4.0)], "id-C": [(2.0, 4.0)]}
    out = write_output(tmp_path / "out", truth, appearances=appearances)
    scores = score(out, truth)
    assert scores.f == pytest.approx(1.0)
    assert scores.time_iou["A"] == pytest.approx(0.5)
    assert scores.time_iou["B"] == pytest.approx(1.0)
    assert not scores.passed


def test_unlabelled_detections_count_against_recall(tmp_path: Path) -> None:
    truth = make_truth()

    def drop_some_a(frame: int, person: str) -> str | None:
        return None if person == "A" and frame % 4 == 0 else f"id-{person}"

    scores = score(write_output(tmp_path / "out", truth, drop_some_a), truth)
    assert scores.precision == pytest.approx(1.0)
    assert scores.recall < 1.0
    assert scores.matched == 85
    assert scores.found_persons == 3


def test_false_positives_missed_faces_and_loose_boxes(tmp_path: Path) -> None:
    truth = make_truth()
    stray = {"frame": 5, "t": 0.5, "box": [280, 200, 300, 220], "score": 0.6, "person": "id-X"}
    out = write_output(tmp_path / "out", truth, frames=lambda i: i != 7, extra=[stray])
    scores = score(out, truth)
    assert scores.false_positives == 1
    assert scores.missed == 2  # A and B on frame 7
    # Stray and missed detections are reported but are not targets: F and time-IoU still hold.
    assert scores.found_persons == 3
    assert scores.passed, scores.failures()

    # Boxes shifted by 30 px overlap the true ones with IoU < 0.4: nothing matches.
    loose = score(write_output(tmp_path / "loose", truth, shift=30.0), truth)
    assert loose.matched == 0
    assert loose.false_positives == 85
    assert loose.f == 0.0
    assert loose.min_time_iou == 0.0
    assert not loose.passed


def test_sparse_analysis_counts_only_analysed_frames(tmp_path: Path) -> None:
    truth = make_truth()
    out = write_output(tmp_path / "out", truth, frames=lambda i: i % 2 == 0,
                       frames_analyzed=FRAMES // 2)
    scores = score(out, truth)
    assert scores.truth_faces == scores.matched
    assert scores.missed == 0
    assert scores.f == pytest.approx(1.0)


def test_irregular_sampling_estimate_counts_faces_once(tmp_path: Path) -> None:
    truth = make_truth()
    # About 4 of every 10 frames, as sampling at 4 fps from 10 fps video does.
    sampled = {0, 3, 5, 8, 10, 13, 15, 18, 20, 23, 25, 28, 30, 33, 35, 38}
    out = write_output(tmp_path / "out", truth, frames=lambda i: i in sampled and i != 13,
                       frames_analyzed=len(sampled))
    scores = score(out, truth)
    faces_per_frame = {i: len(truth.frames[i].faces) for i in sampled}
    assert scores.truth_faces == sum(faces_per_frame.values())
    assert scores.missed == faces_per_frame[13]


def test_a_true_absence_shorter_than_the_products_left_after_is_one_appearance(
        tmp_path: Path) -> None:
    # D is away for 1.2 s (frames 15-26): over a second, under events.left_after_s (1.5 s).
    frames = tuple(FrameTruth(index=i, t=i / FPS, faces=(TruthFace("D", BOXES["A"]),)
                              if i < 15 or i >= 27 else ()) for i in range(FRAMES))
    truth = GroundTruth("tiny", 320, 240, FPS, frames)
    out = write_output(tmp_path / "out", truth, appearances={"id-D": [(0.0, 4.0)]})
    assert score(out, truth).time_iou == {"D": pytest.approx(1.0)}


def test_the_speed_benchmark_says_how_much_cpu_the_host_stole() -> None:
    assert stolen((1000, 10), (2000, 60)) == "5 % of the CPU stolen"
    assert stolen(None, (2000, 60)) == "steal unknown"
    assert stolen((2000, 60), (2000, 60)) == "steal unknown"  # no time passed
    total, steal = cpu_ticks() or (0, 0)
    assert total > steal >= 0
