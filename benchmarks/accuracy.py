"""Accuracy benchmark: run the product (the file path, ``analyze``, as decided online and as
refined by its second look at the whole video, and the live path, ``run`` on the video played
as a live camera) and the baseline on every benchmark scenario, and score them.

``python -m benchmarks.accuracy [--only NAME ...] [--skip-baseline] [--skip-live]
[--live-fps FPS] [--dir DIR]``

``--live-fps`` analyses the live camera at another rate than a camera's default 5 fps: at 10
(``analyze``'s rate, where live frames get the near-face search and each frame's embeddings are
decided after the one before) ``lookalikes``, ``cuts``, ``hard-compression`` and ``crowd`` fail.

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

from benchmarks.scoring import Scores, format_table, score
from benchmarks.synthetic import BENCHMARK_SCENARIOS, GroundTruth, build

Analyzer = Callable[[Path, Path], object]
JUDGED = ("product refined", "live")  # the systems the targets are for


def bench_dir() -> Path:
    """Where benchmark videos and outputs live: ``$FACESTREAM_BENCH_DIR`` or benchmarks/.cache."""
    configured = os.environ.get("FACESTREAM_BENCH_DIR")
    return Path(configured) if configured else Path(__file__).resolve().parent / ".cache"


def systems(skip_baseline: bool, skip_live: bool = False,
            live_fps: float | None = None) -> list[tuple[str, Analyzer]]:
    """The analyzers to compare: the product's file path as decided online (what ``run``
    says) and refined (the report's second look, what ``analyze`` reports), its live path
    (unless skipped; a camera's 5 analysed fps, or ``live_fps``), then (unless skipped) the
    seed-design baseline."""
    from stream.config import AnalyzeConfig
    from stream.pipeline.file import analyze_video

    found: list[tuple[str, Analyzer]] = [
        ("product online", partial(analyze_video, config=AnalyzeConfig(refine=False))),
        ("product refined", analyze_video)]
    if not skip_live:
        from benchmarks.live_accuracy import analyze_live

        found.append(("live", analyze_live if live_fps is None
                      else partial(analyze_live, sample_fps=live_fps)))
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
    args = parser.parse_args(argv)

    directory: Path = args.dir or bench_dir()
    names: list[str] = args.only or list(BENCHMARK_SCENARIOS)
    if args.live_fps is not None and not 0 < args.live_fps <= 30:
        parser.error(f"--live-fps must be above 0 and at most 30, got {args.live_fps:g}")
    compared = systems(args.skip_baseline, args.skip_live, args.live_fps)

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
