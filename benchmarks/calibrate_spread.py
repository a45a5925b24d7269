"""Calibrate the live second look's bar, and whether an identity's threshold should follow its
own spread, on videos held out from the ones whose splits it was made for.

``python -m benchmarks.calibrate_spread [NAME ...]`` (default: the videos in ``HELD_OUT``)

For every visit of a person (their faces with no gap over 1.5 s) that has ``second_look_faces``
good faces, the template of those faces is compared, as the second look compares a young
identity (:mod:`stream.identity.consolidate`), with every person's earlier visits as the
gallery would hold them: 10-face templates, near-duplicates (under 0.08) left out. Each pair
gives the average linkage (mean distance to the exemplars), the nearest exemplar, and the
older identity's spread (mean distance between its exemplars); one person, or two. The fit:
the highest fixed bar no pair of two people is under, and the best bar ``a + b * spread``
(``b`` on a grid; ``a`` the highest no pair of two people is under), by how many pairs of one
person each joins. A ``b`` above 0 would mean a widely spread identity may accept farther.
"""

from __future__ import annotations

import argparse
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.accuracy import bench_dir
from benchmarks.synthetic import build
from stream.config import EngineSettings, EventSettings
from stream.identity.gallery import MIN_EXEMPLAR_GAP
from stream.identity.matcher import MatchSettings
from stream.identity.track import box_iou, template
from stream.pipeline.file import batches
from stream.sources import DecodeStats, probe, sampled_frames
from stream.types import FloatArray
from stream.vision.executor import SharpnessBaseline, VisionWorker

# Not the videos the second look was made for (hard-dim, lookalikes, hard-compression) nor
# those it was checked on (cuts, ten-people, crowd).
HELD_OUT = ("demo", "speed", "hard-roll", "hard-blur", "hard-bar", "three-at-once", "occlusion")
# A visit ends where an appearance would; the gallery's exemplars as the product makes them.
GAP_S = EventSettings().left_after_s
EXEMPLAR_FACES = MatchSettings(threshold=1.0).exemplar_faces
MIN_EXEMPLAR_DISTANCE = MIN_EXEMPLAR_GAP


@dataclass(frozen=True)
class Pair:
    """A visit's template against one person's earlier exemplars."""

    video: str
    same: bool
    linkage: float
    nearest: float
    spread: float


def good_faces(video: Path, worker: VisionWorker, name: str) -> dict[str, list[tuple[float,
                                                                                     FloatArray]]]:
    """Each true person's good, sure faces (time, embedding), in time order."""
    truth = build(name, video.parent)[1]
    info = probe(video)
    baseline = SharpnessBaseline()
    faces: dict[str, list[tuple[float, FloatArray]]] = {}
    frames = sampled_frames(info, 10, DecodeStats(), detect_width=worker.detector.detect_width)
    for batch in batches(frames, 8):
        for result in worker.process(batch, None, [baseline] * len(batch)):
            true = truth.frames[result.frame.index].faces
            for i, box in enumerate(result.faces.boxes):
                if not result.good[i] or not true:
                    continue
                overlap, person = max((box_iou(np.asarray(face.box, np.float32), box),
                                       face.person) for face in true)
                if overlap >= 0.5:
                    faces.setdefault(person, []).append((result.frame.t, result.embeddings[i]))
    return faces


def visits(faces: list[tuple[float, FloatArray]]) -> list[tuple[float, FloatArray]]:
    """(start, faces) of each visit: runs of faces with no gap over ``GAP_S``."""
    result: list[tuple[float, list[FloatArray]]] = []
    last = -math.inf
    for t, vector in faces:
        if t - last > GAP_S:
            result.append((t, []))
        result[-1][1].append(vector)
        last = t
    return [(start, np.stack(vectors)) for start, vectors in result]


def exemplars(vectors: FloatArray) -> FloatArray:
    """The gallery's exemplars of ``vectors``: 10-face templates, near-duplicates left out."""
    kept: list[FloatArray] = []
    for start in range(0, len(vectors) - EXEMPLAR_FACES + 1, EXEMPLAR_FACES):
        candidate = template(vectors[start:start + EXEMPLAR_FACES])
        if all(float(np.linalg.norm(candidate - other)) >= MIN_EXEMPLAR_DISTANCE
               for other in kept):
            kept.append(candidate)
    return np.stack(kept) if kept else np.zeros((0, vectors.shape[1]), np.float32)


def pairs(name: str, faces: dict[str, list[tuple[float, FloatArray]]], young: int) -> list[Pair]:
    """Every visit with ``young`` good faces against every person's earlier visits."""
    by_person = {person: visits(found) for person, found in faces.items()}
    result = []
    for person, own in by_person.items():
        for start, vectors in own:
            if len(vectors) < young:
                continue
            query = template(vectors[:young])
            for other, theirs in by_person.items():
                earlier = [v for s, v in theirs if s < start]
                if not earlier:
                    continue
                held = exemplars(np.concatenate(earlier))
                if not len(held):
                    continue
                distances = np.linalg.norm(held - query, axis=1)
                between = np.linalg.norm(held[:, None] - held[None], axis=2)
                spread = (float(between[np.triu_indices(len(held), 1)].mean())
                          if len(held) > 1 else 0.0)
                result.append(Pair(name, person == other, float(distances.mean()),
                                   float(distances.min()), spread))
    return result


def fit(found: list[Pair]) -> list[str]:
    """The fixed bar and the best spread-dependent bar, as lines to print."""
    same = [p for p in found if p.same]
    different = [p for p in found if not p.same]
    if not same or not different:
        return ["too few pairs to fit"]
    lines = [f"{len(same)} pairs of one person, {len(different)} of two people"]
    for what in ("linkage", "nearest"):
        closest = min(getattr(p, what) for p in different)
        joined = sum(getattr(p, what) < closest for p in same)
        lines.append(f"{what}: two people from {closest:.3f}; one person "
                     f"{min(getattr(p, what) for p in same):.3f}-"
                     f"{max(getattr(p, what) for p in same):.3f}; a fixed bar at {closest:.3f} "
                     f"joins {joined}/{len(same)}")
    best: tuple[int, float, float] | None = None
    for slope in np.round(np.arange(-0.5, 0.51, 0.05), 2):
        a = min(p.linkage - slope * p.spread for p in different)
        joined = sum(p.linkage - slope * p.spread < a for p in same)
        if best is None or (joined, -abs(slope)) > (best[0], -abs(best[1])):
            best = (joined, float(slope), a)
    assert best is not None
    lines.append(f"linkage < a + b * spread: best b = {best[1]:+.2f} (a = {best[2]:.3f}) joins "
                 f"{best[0]}/{len(same)}")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", default=list(HELD_OUT))
    args = parser.parse_args(argv)
    worker = VisionWorker.from_settings(EngineSettings())
    young = MatchSettings(threshold=worker.embedder.threshold).second_look_faces
    found: list[Pair] = []
    for name in args.names:
        video = build(name, bench_dir())[0]
        these = pairs(name, good_faces(video, worker, name), young)
        print(f"{name}: {sum(p.same for p in these)} pairs of one person, "
              f"{sum(not p.same for p in these)} of two", flush=True)
        found += these
    for line in fit(found):
        print(line)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
