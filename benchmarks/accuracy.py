"""Accuracy benchmark: run the product (the file path, ``analyze``, as decided online and as
refined by its second look at the whole video, and the live path, ``run`` on the video played
as a live camera) and the baseline on every benchmark scenario, and score them.

``python -m benchmarks.accuracy [--only NAME ...] [--skip-baseline] [--skip-live]
[--live-fps FPS] [--shift-px N] [--dir DIR]``

``--live-fps`` analyses the live camera at another rate than a camera's default 5 fps: at 10
(``analyze``'s rate, where live frames get the near-face search and each frame's embeddings are
decided after the one before) ``lookalikes``, ``cuts``, ``hard-compression`` and ``crowd`` fail.

``--shift-px`` moves every frame the product's detector sees by N pixels (its faces moved
back): to a person the same video, to the networks a slightly different input. Its people should
not change; see the README's "Robustness" for what they do.

Videos are rendered once into ``$FACESTREAM_BENCH_DIR`` (default ``benchmarks/.cache/``); outputs
go to ``<dir>/runs/<scenario>/<system>/``. Exits 1 when the product (refined, or live) misses a
target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path

import torch

from benchmarks.scoring import Scores, format_table, score
from benchmarks.synthetic import BENCHMARK_SCENARIOS, GroundTruth, build
from stream.config import EngineSettings
from stream.types import Faces
from stream.vision.detect import MtcnnDetector
from stream.vision.executor import VisionWorker

Analyzer = Callable[[Path, Path], object]
JUDGED = ("product refined", "live")  # the systems the targets are for


def bench_dir() -> Path:
    """Where benchmark videos and outputs live: ``$FACESTREAM_BENCH_DIR`` or benchmarks/.cache."""
    configured = os.environ.get("FACESTREAM_BENCH_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent / ".cache"


class ShiftedDetector:
    """``detector`` seeing every image moved ``pixels`` right and down, the faces it finds
    moved back: the same video to a person, a slightly different input to the networks. A
    product whose people change under it decides them by chance."""

    def __init__(self, detector: MtcnnDetector, pixels: int) -> None:
        self.detector, self.pixels = detector, pixels
        self.detect_width = detector.detect_width

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        """The faces of ``images`` moved, moved back."""
        found = self.detector.detect(self._moved(images), source_width=source_width)
        return [self._by(faces, -self._offset(images, source_width)) for faces in found]

    def detect_near(self, images: torch.Tensor, near: Sequence[Faces], *,
                    source_width: int | None = None) -> list[Faces]:
        """The faces of ``images`` moved, found near ``near`` moved, moved back."""
        offset = self._offset(images, source_width)
        found = self.detector.detect_near(self._moved(images),
                                          [self._by(faces, offset) for faces in near],
                                          source_width=source_width)
        return [self._by(faces, -offset) for faces in found]

    def _moved(self, images: torch.Tensor) -> torch.Tensor:
        """``images`` moved right and down, their first row and column repeated into the gap
        (as the image goes on; a black band would be an edge the video does not have)."""
        rows = (torch.arange(images.shape[2]) - self.pixels).clamp(min=0).to(images.device)
        columns = (torch.arange(images.shape[3]) - self.pixels).clamp(min=0).to(images.device)
        return images[:, :, rows][:, :, :, columns].contiguous()

    def _offset(self, images: torch.Tensor, source_width: int | None) -> float:
        """The move in frame pixels (the images may be copies shrunk from wider frames)."""
        return self.pixels * (source_width or images.shape[3]) / images.shape[3]

    @staticmethod
    def _by(faces: Faces, offset: float) -> Faces:
        return Faces(faces.boxes + offset, faces.scores, faces.landmarks + offset)


def shifted_worker(engine: EngineSettings, pixels: int) -> VisionWorker:
    """The models ``engine`` asks for, their detector seeing frames moved by ``pixels``."""
    worker = VisionWorker.from_settings(engine)
    assert isinstance(worker.detector, MtcnnDetector)
    worker.detector = ShiftedDetector(worker.detector, pixels)
    return worker


def systems(skip_baseline: bool, skip_live: bool = False, live_fps: float | None = None,
            shift_px: int = 0) -> list[tuple[str, Analyzer]]:
    """The analyzers to compare: the product's file path as decided online (what ``run``
    says) and refined (the report's second look, what ``analyze`` reports), its live path
    (unless skipped; a camera's 5 analysed fps, or ``live_fps``), then (unless skipped) the
    seed-design baseline. ``shift_px``: the product's detector sees frames moved that far
    (:class:`ShiftedDetector`)."""
    from stream.config import AnalyzeConfig
    from stream.pipeline.file import analyze_video

    # analyze and run have the same engine settings: one set of shifted models serves both.
    worker = shifted_worker(EngineSettings(), shift_px) if shift_px else None
    found: list[tuple[str, Analyzer]] = [
        ("product online", partial(analyze_video, config=AnalyzeConfig(refine=False),
                                   worker=worker)),
        ("product refined", partial(analyze_video, worker=worker))]
    if not skip_live:
        from benchmarks.live_accuracy import SAMPLE_FPS, analyze_live

        found.append(("live", partial(analyze_live, sample_fps=live_fps or SAMPLE_FPS,
                                      worker=worker)))
    if not skip_baseline:
        from benchmarks.baseline import analyze_baseline

        found.append(("baseline", analyze_baseline))
    return found


def run_one(
    analyzer: Analyzer, video: Path, truth: GroundTruth, out: Path
) -> tuple[Scores | None, float]:
    """Run ``analyzer`` on ``video`` into a fresh ``out`` and score it.

    Returns the scores (``None`` when the analyzer raised; the traceback goes to stderr) and the
    wall-clock seconds the analyzer took.
    """
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    started = time.perf_counter()
    try:
        analyzer(video, out)
    except Exception:
        traceback.print_exc()
        return None, time.perf_counter() - started
    elapsed = time.perf_counter() - started
    return score(out, truth, video=truth.scenario), elapsed


def result_row(system: str, scores: Scores | None, elapsed: float, video: str) -> list[str]:
    """A table row: the system, its scores (or an error marker) and its wall time."""
    if scores is None:
        cells = [video] + ["-"] * (len(Scores.HEADER) - 2) + ["ERROR"]
    else:
        cells = list(scores.row())
    return [system, *cells, f"{elapsed:.1f}"]


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", action="append", choices=BENCHMARK_SCENARIOS, metavar="NAME",
                        help="run only this scenario (repeatable); one of: "
                        + ", ".join(BENCHMARK_SCENARIOS))
    parser.add_argument("--skip-baseline", action="store_true", help="do not run the baseline")
    parser.add_argument("--skip-live", action="store_true",
                        help="do not run the live path (it plays each video in real time)")
    parser.add_argument("--live-fps", type=float, default=None, metavar="FPS",
                        help="analyse the live path's camera at this rate (default 5, a "
                        "camera's default)")
    parser.add_argument("--dir", type=Path, default=None,
                        help="cache directory (default: $FACESTREAM_BENCH_DIR or "
                        "benchmarks/.cache)")
    parser.add_argument("--shift-px", type=int, default=0, metavar="N",
                        help="the product's detector sees every frame moved N pixels right and "
                        "down (a robustness check: its people should not change)")
    args = parser.parse_args(argv)

    directory: Path = args.dir or bench_dir()
    names: list[str] = args.only or list(BENCHMARK_SCENARIOS)
    if args.live_fps is not None and not 0 < args.live_fps <= 30:
        parser.error(f"--live-fps must be above 0 and at most 30, got {args.live_fps:g}")
    if not 0 <= args.shift_px <= 16:
        parser.error(f"--shift-px must be 0 to 16, got {args.shift_px}")
    compared = systems(args.skip_baseline, args.skip_live, args.live_fps, args.shift_px)

    rows: list[list[str]] = []
    product_failures: list[str] = []
    for name in names:
        started = time.perf_counter()
        video, truth = build(name, directory)
        print(f"[{name}] video ready in {time.perf_counter() - started:.1f} s: {video}",
              file=sys.stderr)
        for system, analyzer in compared:
            out = directory / "runs" / name / system.replace(" ", "-")
            scores, elapsed = run_one(analyzer, video, truth, out)
            rows.append(result_row(system, scores, elapsed, name))
            status = "error" if scores is None else ("pass" if scores.passed else "FAIL")
            print(f"[{name}] {system}: {status} in {elapsed:.1f} s", file=sys.stderr)
            if system not in JUDGED:
                continue
            if scores is None:
                product_failures.append(f"{name} ({system}): the product raised an error")
            else:
                product_failures.extend(f"{name} ({system}): {reason}"
                                        for reason in scores.failures())

    print(format_table(("system", *Scores.HEADER, "wall s"), rows))
    if product_failures:
        print("\nproduct misses targets:")
        for failure in product_failures:
            print(f"  {failure}")
        return 1
    print("\nproduct meets every target")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
