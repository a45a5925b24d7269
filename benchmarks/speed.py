"""Speed benchmark: real-time factor of the product and the baseline on the ``speed`` video.

``python -m benchmarks.speed [--skip-baseline] [--warmup] [--dir DIR]``

Real-time factor = video seconds / wall-clock seconds of one analyze call (higher is faster).
Without ``--warmup`` each timing includes whatever one-time set-up (model loading) the call does.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.accuracy import bench_dir, result_row, run_one, systems
from benchmarks.scoring import Scores, format_table
from benchmarks.synthetic import build


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 when an analyzer raised)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-baseline", action="store_true", help="time the product only")
    parser.add_argument("--warmup", action="store_true",
                        help="run each system once on the demo video first, untimed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="cache directory (default: $FACESTREAM_BENCH_DIR or "
                        "benchmarks/.cache)")
    args = parser.parse_args(argv)

    directory: Path = args.dir or bench_dir()
    video, truth = build("speed", directory)
    compared = systems(args.skip_baseline)
    if args.warmup:
        demo, demo_truth = build("demo", directory)
        for system, analyzer in compared:
            print(f"warming up {system} on {demo.name}", file=sys.stderr)
            run_one(analyzer, demo, demo_truth, directory / "runs" / "warmup" / system)

    rows: list[list[str]] = []
    factors: dict[str, float] = {}
    errors = 0
    for system, analyzer in compared:
        print(f"timing {system} on {video.name} ({truth.duration_s:.1f} s of video)",
              file=sys.stderr)
        scores, elapsed = run_one(analyzer, video, truth, directory / "runs" / "speed" / system)
        errors += scores is None
        factors[system] = truth.duration_s / elapsed if elapsed > 0 else float("inf")
        rows.append([*result_row(system, scores, elapsed, "speed"), f"{factors[system]:.2f}x"])

    print(f"video: {video} ({truth.width}x{truth.height}, {truth.fps:g} fps, "
          f"{truth.duration_s:.1f} s, {len(truth.persons)} persons)")
    print(format_table(("system", *Scores.HEADER, "wall s", "real-time"), rows))
    if "product" in factors and "baseline" in factors:
        print(f"\nproduct is {factors['product'] / factors['baseline']:.2f}x the baseline's speed")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
