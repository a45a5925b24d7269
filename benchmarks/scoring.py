"""Score an analyze output directory (report.json + detections.jsonl) against ground truth.

Measures: the number of persons found; BCubed precision/recall/F of person IDs over detections
matched to true faces (box IoU >= 0.4, greedy per frame); and per true person the time-IoU of
its intervals with the appearances of the predicted person that holds most of its detections.
A person's true intervals are joined across absences shorter than the product's own
``events.left_after_s``, the absence that ends an appearance.
"""

from __future__ import annotations

import bisect
import json
from collections import Counter
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from benchmarks.synthetic import Box, GroundTruth
from stream.config import EventSettings
from stream.identity.track import box_iou

MIN_IOU = 0.4
TARGET_F = 0.99
TARGET_TIME_IOU = 0.95
# A shorter absence is no new appearance, for the product and so for the truth.
LEFT_AFTER_S = EventSettings().left_after_s

Interval = tuple[float, float]


@dataclass(frozen=True)
class Detection:
    """One line of detections.jsonl."""

    frame: int
    t: float
    box: Box
    score: float
    person: str | None


@dataclass(frozen=True)
class PredictedPerson:
    """A person of report.json and its appearance intervals."""

    id: str
    appearances: tuple[Interval, ...]


@dataclass(frozen=True)
class Output:
    """The parts of an analyze output directory that scoring uses.

    ``analyzed_frames`` is the report's optional explicit list of analysed frame indices.
    """

    persons: tuple[PredictedPerson, ...]
    detections: tuple[Detection, ...]
    frames_decoded: int
    frames_analyzed: int
    analyzed_frames: frozenset[int] | None = None


def load_output(out_dir: Path) -> Output:
    """Read ``report.json`` and ``detections.jsonl`` (missing detections file: no detections)."""
    report: dict[str, Any] = json.loads((out_dir / "report.json").read_text())
    persons = tuple(
        PredictedPerson(
            id=str(person["id"]),
            appearances=tuple(
                (float(a["start_s"]), float(a["end_s"])) for a in person.get("appearances", [])
            ),
        )
        for person in report.get("persons", [])
    )
    detections: list[Detection] = []
    path = out_dir / "detections.jsonl"
    if path.is_file():
        for line in path.read_text().splitlines():
            if not line.strip():
                continue
            item = json.loads(line)
            x1, y1, x2, y2 = (float(v) for v in item["box"])
            person = item.get("person")
            detections.append(
                Detection(
                    frame=int(item["frame"]),
                    t=float(item.get("t", 0.0)),
                    box=(x1, y1, x2, y2),
                    score=float(item.get("score", 1.0)),
                    person=None if person is None else str(person),
                )
            )
    explicit = report.get("analyzed_frames")
    return Output(
        persons=persons,
        detections=tuple(detections),
        frames_decoded=int(report.get("frames_decoded", 0)),
        frames_analyzed=int(report.get("frames_analyzed", 0)),
        analyzed_frames=None if explicit is None else frozenset(int(i) for i in explicit),
    )


@dataclass(frozen=True)
class Match:
    """A detection matched to a true face of the same frame."""

    detection: Detection
    person: str
    iou: float


def match_detections(
    detections: Sequence[Detection], truth: GroundTruth, min_iou: float = MIN_IOU
) -> tuple[list[Match], list[Detection]]:
    """Match detections to true faces frame by frame, greedily by IoU (each side used once).

    Returns the matches and the unmatched detections (false positives).
    """
    by_frame: dict[int, list[Detection]] = {}
    for detection in detections:
        by_frame.setdefault(detection.frame, []).append(detection)
    matches: list[Match] = []
    unmatched: list[Detection] = []
    for index, frame_detections in sorted(by_frame.items()):
        faces = truth.frames[index].faces if 0 <= index < len(truth.frames) else ()
        pairs = sorted(
            (
                (box_iou(d.box, f.box), di, fi)
                for di, d in enumerate(frame_detections)
                for fi, f in enumerate(faces)
            ),
            key=lambda pair: -pair[0],
        )
        used_d: set[int] = set()
        used_f: set[int] = set()
        for iou, di, fi in pairs:
            if iou < min_iou:
                break
            if di in used_d or fi in used_f:
                continue
            used_d.add(di)
            used_f.add(fi)
            matches.append(Match(frame_detections[di], faces[fi].person, iou))
        unmatched.extend(d for di, d in enumerate(frame_detections) if di not in used_d)
    return matches, unmatched


def bcubed(pairs: Sequence[tuple[Hashable, Hashable]]) -> tuple[float, float, float]:
    """BCubed precision, recall and F1 of (predicted cluster, true class) pairs, one per item."""
    if not pairs:
        return 0.0, 0.0, 0.0
    joint = Counter(pairs)
    predicted = Counter(p for p, _ in pairs)
    true = Counter(t for _, t in pairs)
    n = len(pairs)
    # Every item in cell (p, t) has the same per-item precision n_pt/n_p and recall n_pt/n_t.
    precision = sum(c * c / predicted[p] for (p, _), c in joint.items()) / n
    recall = sum(c * c / true[t] for (_, t), c in joint.items()) / n
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    return precision, recall, f


def merge_intervals(intervals: Iterable[Interval], gap: float = 0.0) -> list[Interval]:
    """Sort and merge intervals that overlap or are separated by less than ``gap``."""
    merged: list[Interval] = []
    for start, end in sorted(intervals):
        if merged and start - merged[-1][1] < gap + 1e-9:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def _length(intervals: Iterable[Interval]) -> float:
    return sum(end - start for start, end in intervals)


def interval_iou(a: Iterable[Interval], b: Iterable[Interval]) -> float:
    """|a ∩ b| / |a ∪ b| of two sets of time intervals; 0 when both are empty."""
    left = merge_intervals(a)
    right = merge_intervals(b)
    inter = 0.0
    i = j = 0
    while i < len(left) and j < len(right):
        lo = max(left[i][0], right[j][0])
        hi = min(left[i][1], right[j][1])
        inter += max(0.0, hi - lo)
        if left[i][1] < right[j][1]:
            i += 1
        else:
            j += 1
    union = _length(left) + _length(right) - inter
    return inter / union if union > 0 else 0.0


def analyzed_frames(output: Output, frame_count: int) -> frozenset[int]:
    """The frame indices the product analysed.

    The report's explicit ``analyzed_frames`` list when present. Otherwise every frame when
    ``frames_analyzed >= frames_decoded``; else an estimate: every frame with a detection, plus,
    for each of the ``frames_analyzed`` points of an even grid with no detection frame within
    half a grid step, the frame at that point.
    """
    if output.analyzed_frames is not None:
        return output.analyzed_frames
    with_detections = sorted({d.frame for d in output.detections})
    if output.frames_analyzed <= 0 or output.frames_analyzed >= output.frames_decoded:
        return frozenset(range(frame_count)) | frozenset(with_detections)
    step = output.frames_decoded / output.frames_analyzed
    found = set(with_detections)
    for k in range(output.frames_analyzed):
        point = k * step
        i = bisect.bisect_left(with_detections, point - step / 2)
        if i < len(with_detections) and with_detections[i] < point + step / 2:
            continue
        found.add(min(frame_count - 1, int(point + 0.5)))
    return frozenset(found)


@dataclass(frozen=True)
class Scores:
    """Accuracy of one output against one ground truth."""

    video: str
    true_persons: int
    found_persons: int
    precision: float
    recall: float
    f: float
    truth_faces: int
    matched: int
    false_positives: int
    missed: int
    time_iou: dict[str, float] = field(default_factory=dict)
    assignment: dict[str, str | None] = field(default_factory=dict)

    @property
    def min_time_iou(self) -> float:
        """The worst time-IoU over true persons (1.0 when the video has none)."""
        return min(self.time_iou.values(), default=1.0)

    def failures(self) -> list[str]:
        """Why the targets are missed; empty when they are met."""
        reasons: list[str] = []
        if self.found_persons != self.true_persons:
            reasons.append(f"found {self.found_persons} persons, expected {self.true_persons}")
        if self.f < TARGET_F:
            reasons.append(f"BCubed F {self.f:.4f} < {TARGET_F}")
        for person, iou in sorted(self.time_iou.items()):
            if iou < TARGET_TIME_IOU:
                reasons.append(
                    f"time-IoU of {person} (as {self.assignment.get(person)}) "
                    f"{iou:.3f} < {TARGET_TIME_IOU}"
                )
        return reasons

    @property
    def passed(self) -> bool:
        """Exact person count, BCubed F >= 0.99 and every time-IoU >= 0.95."""
        return not self.failures()

    HEADER: ClassVar[tuple[str, ...]] = (
        "video", "true", "found", "P", "R", "F", "min tIoU", "matched", "FP", "missed", "result"
    )

    def row(self) -> tuple[str, ...]:
        """The cells of a table row, in the order of ``Scores.HEADER``."""
        return (
            self.video,
            str(self.true_persons),
            str(self.found_persons),
            f"{self.precision:.4f}",
            f"{self.recall:.4f}",
            f"{self.f:.4f}",
            f"{self.min_time_iou:.3f}",
            f"{self.matched}/{self.truth_faces}",
            str(self.false_positives),
            str(self.missed),
            "pass" if self.passed else "FAIL",
        )


def format_table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """Plain left-aligned text table."""
    lines = [list(header), *(list(row) for row in rows)]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    text = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            for line in lines]
    text.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(text)


def score_output(output: Output, truth: GroundTruth, *, video: str = "") -> Scores:
    """Score an already loaded output; see :func:`score`."""
    matches, unmatched = match_detections(output.detections, truth)
    singleton = 0
    pairs: list[tuple[Hashable, Hashable]] = []
    for match in matches:
        if match.detection.person is None:
            # An unlabelled face is its own cluster: it can only hurt recall.
            singleton += 1
            pairs.append((("unlabelled", singleton), match.person))
        else:
            pairs.append((match.detection.person, match.person))
    precision, recall, f = bcubed(pairs)

    analyzed = analyzed_frames(output, len(truth.frames))
    truth_faces = sum(len(frame.faces) for frame in truth.frames if frame.index in analyzed)

    votes: dict[str, Counter[str]] = {}
    for match in matches:
        if match.detection.person is not None:
            votes.setdefault(match.person, Counter())[match.detection.person] += 1
    appearances = {person.id: person.appearances for person in output.persons}
    time_iou: dict[str, float] = {}
    assignment: dict[str, str | None] = {}
    for person in truth.persons:
        counts = votes.get(person)
        if not counts:
            assignment[person] = None
            time_iou[person] = 0.0
            continue
        # Most detections wins; ties go to the smallest id so the result is deterministic.
        chosen = min(counts, key=lambda pid: (-counts[pid], pid))
        assignment[person] = chosen
        true_intervals = truth.intervals(person, LEFT_AFTER_S)
        time_iou[person] = interval_iou(appearances.get(chosen, ()), true_intervals)

    return Scores(
        video=video or truth.scenario,
        true_persons=len(truth.persons),
        found_persons=len(output.persons),
        precision=precision,
        recall=recall,
        f=f,
        truth_faces=truth_faces,
        matched=len(matches),
        false_positives=len(unmatched),
        missed=max(0, truth_faces - len(matches)),
        time_iou=time_iou,
        assignment=assignment,
    )


def score(out_dir: Path, truth: GroundTruth, *, video: str = "") -> Scores:
    """Score the analyze output in ``out_dir`` against ``truth``."""
    return score_output(load_output(out_dir), truth, video=video)
