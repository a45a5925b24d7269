"""Speed benchmark: real-time factor of the product on each backend (torch, onnx) and of the
seed baseline on the ``speed`` video (720p30, 20 s), each with its BCubed F on that video.

``python -m benchmarks.speed [--skip-baseline] [--backend NAME ...] [--repeat N] [--warmup]
[--dir DIR]``

Real-time factor = video seconds / wall-clock seconds of one analyze call (higher is faster);
``cpu s`` is the process's CPU time during the call (less sensitive to other load on the
machine). The load average is printed before and after: on a shared machine, say it beside the
figures. Without ``--warmup`` each timing includes whatever one-time set-up (model loading, an
ONNX export missing from the cache) the call does. ``--repeat N`` gives medians of N interleaved
rounds: on a shared virtual machine one run of the same code varies by 10-20 %.
"""

from __future__ import annotations

import argparse
import functools
import os
import resource
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from benchmarks.accuracy import Analyzer, bench_dir, result_row, run_one
from benchmarks.scoring import Scores, format_table
from benchmarks.synthetic import build

# Imported here, not in the timed calls: the first system timed would pay for them alone.
from stream.config import AnalyzeConfig
from stream.pipeline.file import analyze_video
from stream.vision.executor import VisionWorker

BACKENDS = ("torch", "onnx")


def product(backend: str, video: Path, out: Path, *, every_frame_fully: bool = False) -> object:
    """``analyze`` with default settings, the networks on ``backend`` (the models load inside
    the timing, as they do for a user; the modules were imported before);
    ``every_frame_fully``: with a full detection on every frame
    (``engine.full_detection_every_s: null``, no near-face search)."""
    engine = AnalyzeConfig().engine.model_copy(update={"backend": backend})
    if every_frame_fully:
        engine = engine.model_copy(update={"full_detection_every_s": None})
    return analyze_video(video, out, worker=VisionWorker.from_settings(engine))


def systems(backends: Sequence[str], skip_baseline: bool) -> list[tuple[str, Analyzer]]:
    """The product on each backend (and on the last with a full detection on every frame),
    then (unless skipped) the seed baseline."""
    found: list[tuple[str, Analyzer]] = [(f"product {backend}", functools.partial(product, backend))
                                         for backend in backends]
    found.append((f"product {backends[-1]}, every frame fully detected",
                  functools.partial(product, backends[-1], every_frame_fully=True)))
    if not skip_baseline:
        from benchmarks.baseline import analyze_baseline

        found.append(("baseline", analyze_baseline))
    return found


def cpu_seconds() -> float:
    """User and system CPU time of this process so far (all its threads)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def load() -> str:
    """The 1-minute load average and the cores, for the figures' context."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores"


def cpu_ticks() -> tuple[int, int] | None:
    """All CPU time of the machine and the part of it stolen by the hypervisor (Linux's
    /proc/stat, in ticks); ``None`` where there is no such file."""
    try:
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    except (OSError, ValueError):
        return None
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen(before: tuple[int, int] | None, after: tuple[int, int] | None) -> str:
    """The share of the machine's CPU time a virtual machine's host took between two
    :func:`cpu_ticks` readings: wall times grow with it, CPU seconds do not."""
    if before is None or after is None or after[0] <= before[0]:
        return "steal unknown"
    return f"{100 * (after[1] - before[1]) / (after[0] - before[0]):.0f} % of the CPU stolen"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; returns the exit status (1 when an analyzer raised)."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--skip-baseline", action="store_true", help="time the product only")
    parser.add_argument("--backend", action="append", choices=BACKENDS, default=None,
                        help="time the product on this backend only (repeatable; default both)")
    parser.add_argument("--repeat", type=int, default=1, metavar="N",
                        help="time every system N times, in N interleaved rounds (so that the "
                        "machine's drift falls on all alike); the figures are the medians, "
                        "with every run's wall time beside them")
    parser.add_argument("--warmup", action="store_true",
                        help="run each system once on the demo video first, untimed")
    parser.add_argument("--dir", type=Path, default=None,
                        help="cache directory (default: $FACESTREAM_BENCH_DIR or "
                        "benchmarks/.cache)")
    args = parser.parse_args(argv)

    directory: Path = args.dir or bench_dir()
    video, truth = build("speed", directory)
    compared = systems(args.backend or BACKENDS, args.skip_baseline)
    if args.warmup:
        demo, demo_truth = build("demo", directory)
        for system, analyzer in compared:
            print(f"warming up {system} on {demo.name}", file=sys.stderr)
            run_one(analyzer, demo, demo_truth, directory / "runs" / "warmup" / system)

    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")
    walls: dict[str, list[float]] = {system: [] for system, _ in compared}
    cpus: dict[str, list[float]] = {system: [] for system, _ in compared}
    scored: dict[str, Scores | None] = {}
    errors = 0
    before, ticks = load(), cpu_ticks()
    for round_number in range(1, args.repeat + 1):
        for system, analyzer in compared:
            print(f"timing {system} on {video.name} ({truth.duration_s:.1f} s of video), run "
                  f"{round_number} of {args.repeat}", file=sys.stderr)
            started = cpu_seconds()
            scores, elapsed = run_one(analyzer, video, truth,
                                      directory / "runs" / "speed" / system.replace(" ", "-"))
            cpus[system].append(cpu_seconds() - started)
            walls[system].append(elapsed)
            errors += scores is None
            if system not in scored or scores is None:  # a failed run's error shows
                scored[system] = scores
    rows: list[list[str]] = []
    factors: dict[str, float] = {}
    for system, _ in compared:
        elapsed = statistics.median(walls[system])
        factors[system] = truth.duration_s / elapsed if elapsed > 0 else float("inf")
        rows.append([*result_row(system, scored[system], elapsed, "speed"),
                     f"{statistics.median(cpus[system]):.1f}", f"{factors[system]:.2f}x",
                     " ".join(f"{wall:.1f}" for wall in walls[system])])

    print(f"video: {video} ({truth.width}x{truth.height}, {truth.fps:g} fps, "
          f"{truth.duration_s:.1f} s, {len(truth.persons)} persons)")
    print(f"machine: {os.cpu_count()} cores; {before} before, {load()} after; "
          f"{stolen(ticks, cpu_ticks())} by the host during the runs")
    print(format_table(("system", *Scores.HEADER, "wall s", "cpu s", "real-time",
                        "each run's wall s"), rows))
    for system, factor in factors.items():
        if system != "baseline" and "baseline" in factors:
            print(f"{system} is {factor / factors['baseline']:.2f}x the baseline's speed")
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
