"""Live service benchmark: capture-to-event latency, cameras sustained, WebSocket fan-out.

``python -m benchmarks.live [latency|cameras|fanout|all] [--backend NAME ...] [--seconds S]
[--max-cameras N] [--dir DIR]``

latency  One 720p camera (the "speed" video played live and looping) analysed at 5 fps by the
         real service in this process. Figures: each analysed frame's capture-to-result latency
         (noted as the models return) and the events' own ``latency_ms``. Baseline: the same
         camera with every due frame queued in an unbounded FIFO and analysed one by one, in
         order, by the same models (what the service would do without latest-wins).
cameras  For each backend (torch, onnx): N = 1, 2, ... such cameras until they are not
         sustained: one analysed at under 95 % of 5 fps, the frames' latency growing between the
         two halves of the run, or a capture-to-event p95 (the events' ``latency_ms``) of 300 ms
         or more. Baseline: the same cameras with one frame in the models at a time
         (``max_batch_frames`` 1). ``--seconds`` and ``--max-cameras`` shorten it.
fanout   The real ``/events`` endpoint on uvicorn, fed by an ``EventBus`` with person.appeared-
         like events (4 KB thumbnail) at 200/s for 10 s, read by 100 WebSocket clients in another
         process. Baseline: 1 client. Clients offer permessage-deflate, as browsers do (the
         server declines it: JPEG thumbnails barely compress).

It prints figures only; nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import multiprocessing
import os
import queue
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from benchmarks.accuracy import bench_dir
from benchmarks.scoring import format_table
from benchmarks.synthetic import build
from stream.config import (
    CameraConfig,
    EngineSettings,
    EventSettings,
    ServerSettings,
    ServiceConfig,
    SourceSettings,
)
from stream.identity.matcher import Identifier, MatchSettings
from stream.pipeline.lane import observations
from stream.service.app import serve, start_server
from stream.service.bus import EventBus
from stream.service.http import Health, build_app
from stream.service.metrics import Metrics
from stream.sources import Camera
from stream.storage import open_gallery
from stream.types import CameraStatusChanged, Frame, PersonAppeared
from stream.vision.backends import BACKENDS
from stream.vision.executor import FrameFaces, SharpnessBaseline, SkipRule, VisionWorker

Document = dict[str, Any]  # an event as JSON
PARTS = ("latency", "cameras", "fanout")
SAMPLE_FPS = 5.0
SUSTAINED_FPS = 0.95 * SAMPLE_FPS
# EventSettings takes any positive interval: person.updated then goes out whenever the face has
# a better thumbnail or has moved, the most events the service can send.
UPDATE_INTERVAL_S = 0.001
WARMUP_S = 5.0
LATENCY_S = 30.0
CAMERAS_S = 20.0
MAX_CAMERAS = 8
MAX_EVENT_P95_S = 0.3  # capture to event, for a camera count to be sustained
# The cameras part's systems: the service as configured (on the CPU each core takes a camera's
# frame as it is free; a GPU takes all cameras' frames in one batch), and one frame at a time.
SYSTEMS = (("default", 8), ("max_batch_frames 1", 1))
NAMED_BACKENDS = tuple(name for name in BACKENDS if name != "auto")
# The second half's p95 "grows" beyond this factor of the first's plus this slack (noise).
GROWTH_FACTOR = 1.5
GROWTH_SLACK_S = 0.15
FANOUT_CLIENTS = 100
FANOUT_RATE = 200.0
FANOUT_S = 10.0
END = "bench-end"  # the camera of the last event of a fan-out run


# --- live pipelines ------------------------------------------------------------------------------


class Analysed(NamedTuple):
    """One analysed frame."""

    at: float  # wall clock when its result was ready
    latency: float  # seconds from its capture
    model_s: float  # its share of the models' call


class TimedWorker(VisionWorker):
    """A loaded worker that notes, for each frame it analyses, when the result was ready, how long
    after the frame's capture that was, and its share of the models' time."""

    def __init__(self, worker: VisionWorker) -> None:
        # Shares the loaded models rather than loading them again through VisionWorker.__init__.
        self.__dict__.update(worker.__dict__)
        self.results: list[Analysed] = []  # extended by the models' thread

    def process(self, frames: list[Frame], skip_embedding: SkipRule | None = None,
                sharpness_baselines: Sequence[SharpnessBaseline] | None = None, *,
                side_by_side: bool = True) -> list[FrameFaces]:
        """:meth:`VisionWorker.process`, noting each frame's capture-to-result latency."""
        started = time.perf_counter()
        results = super().process(frames, skip_embedding, sharpness_baselines,
                                  side_by_side=side_by_side)
        now, per_frame = time.time(), (time.perf_counter() - started) / len(frames)
        self.results.extend(Analysed(now, now - frame.captured_at, per_frame) for frame in frames
                            if frame.captured_at is not None)
        return results


class FifoCamera(Camera):
    """A camera that queues every due frame, unbounded, instead of keeping only the newest."""

    def __init__(self, config: CameraConfig, detect_width: int | None) -> None:
        super().__init__(config, SourceSettings(), detect_width=detect_width,
                         on_status=lambda _: None, frame_ready=threading.Event())
        self.fifo: queue.Queue[Frame] = queue.Queue()

    def _offer(self, frame: Frame) -> None:
        self.stats.frames_sampled += 1
        self.fifo.put(frame)


@dataclass
class LiveRun:
    """What a live pipeline did in its measured window (after the warm-up)."""

    start: float  # wall clock
    end: float
    frames: list[Analysed]
    event_latencies: list[float] = field(default_factory=list)  # seconds, from latency_ms
    delivered: list[float] = field(default_factory=list)  # seconds, capture to the client
    counters: dict[tuple[str, str], float] = field(default_factory=dict)  # /metrics deltas
    backlog: int = 0  # frames still queued at the end, not counted (FIFO baseline)

    @property
    def seconds(self) -> float:
        """The window's length."""
        return self.end - self.start

    def halves(self) -> tuple[list[float], list[float]]:
        """The frame latencies of the window's first and second halves."""
        middle = (self.start + self.end) / 2
        return ([frame.latency for frame in self.frames if frame.at < middle],
                [frame.latency for frame in self.frames if frame.at >= middle])

    def growing(self) -> bool:
        """Whether the frame latency p95 of the second half exceeds the first's (with slack)."""
        first, second = self.halves()
        return p95(second) > GROWTH_FACTOR * p95(first) + GROWTH_SLACK_S

    def latencies(self) -> list[float]:
        """Every frame's capture-to-result latency."""
        return [frame.latency for frame in self.frames]

    def model_s(self) -> float:
        """The models' mean time per frame."""
        return float(np.mean([frame.model_s for frame in self.frames])) if self.frames \
            else math.nan


def timed_worker(backend: str) -> TimedWorker:
    """The service's default models, their networks on ``backend``."""
    worker = TimedWorker(VisionWorker.from_settings(EngineSettings(backend=backend)))
    print(f"models: {worker.embedder.name} on {worker.device}, {worker.backend}",
          file=sys.stderr)
    return worker


def camera_config(name: str, video: Path) -> CameraConfig:
    """``video`` as a live camera: played at its own rate, looping, analysed at 5 fps."""
    return CameraConfig(name=name, url=str(video), sample_fps=SAMPLE_FPS, realtime=True,
                        loop=True)


def service_config(video: Path, cameras: int, max_batch: int = 8) -> ServiceConfig:
    """``cameras`` live cameras of ``video``, events as frequent as allowed, any free port."""
    return ServiceConfig(
        cameras=[camera_config(f"cam{i + 1}", video) for i in range(cameras)],
        engine=EngineSettings(max_batch_frames=max_batch),
        events=EventSettings(update_interval_s=UPDATE_INTERVAL_S),
        server=ServerSettings(port=0))


def scrape(base_url: str) -> dict[tuple[str, str], float]:
    """The camera counters of ``/metrics``: (sample name, camera) -> value."""
    with urllib.request.urlopen(base_url + "/metrics", timeout=10) as response:
        text = response.read().decode()
    return {(sample.name, sample.labels.get("camera", "")): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples
            if sample.name.startswith("facestream_frames_")}


async def listen(url: str, into: list[tuple[float, Document]]) -> None:
    """Append (arrival wall clock, event) for each event of the WebSocket ``url`` until closed."""
    async with connect(url) as websocket:
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                into.append((time.time(), json.loads(message)))


async def run_service(config: ServiceConfig, worker: TimedWorker, seconds: float) -> LiveRun:
    """Run the real service on ``config``: a warm-up, then ``seconds`` measured."""
    worker.results.clear()
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    stop = asyncio.Event()
    service = asyncio.create_task(serve(config, worker=worker, stop=stop,
                                        on_ready=ready.set_result))
    received: list[tuple[float, Document]] = []
    listener: asyncio.Task[None] | None = None
    try:
        racing: set[asyncio.Future[Any]] = {ready, service}
        await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
        if service.done():
            service.result()  # raises what stopped it
            raise RuntimeError("the service ended before it was ready")
        base_url = ready.result()
        listener = asyncio.create_task(listen(
            base_url.replace("http://", "ws://", 1) + "/events", received))
        await asyncio.sleep(WARMUP_S)
        before, start = await asyncio.to_thread(scrape, base_url), time.time()
        await asyncio.sleep(seconds)
        after, end = await asyncio.to_thread(scrape, base_url), time.time()
    finally:
        stop.set()
        await service
        if listener is not None:
            await asyncio.wait_for(listener, 10)
    person = [(at, event) for at, event in received if start <= at <= end
              and "latency_ms" in event]
    return LiveRun(
        start, end, [frame for frame in worker.results if start <= frame.at <= end],
        [event["latency_ms"] / 1000 for _, event in person],
        [at - datetime.fromisoformat(event["captured_at"]).timestamp() for at, event in person],
        {key: value - before.get(key, 0.0) for key, value in after.items()})


def run_fifo(video: Path, worker: TimedWorker, seconds: float) -> LiveRun:
    """The same live camera without latest-wins: every due frame analysed, in order."""
    worker.results.clear()
    camera = FifoCamera(camera_config("fifo", video), worker.detector.detect_width)
    start = time.time() + WARMUP_S
    end = start + seconds
    camera.start()
    try:
        # The models run in a thread of their own, as the service's do: under CPU contention
        # torch called from the main thread was seen to spend several times the CPU per frame.
        with ThreadPoolExecutor(1, thread_name_prefix="fifo-models") as pool:
            pool.submit(_consume, camera, worker, end).result()
    finally:
        camera.stop()
        camera.join(10)
    return LiveRun(start, end, [frame for frame in worker.results if start <= frame.at <= end],
                   backlog=camera.fifo.qsize())


def _consume(camera: FifoCamera, worker: VisionWorker, end: float) -> None:
    embedder = worker.embedder
    identifier = Identifier(open_gallery(None, dim=embedder.dim, embedder=embedder.name,
                                         version=embedder.version),
                            MatchSettings(threshold=embedder.threshold))
    sharpness = SharpnessBaseline()
    while time.time() < end:
        try:
            frame = camera.fifo.get(timeout=0.25)
        except queue.Empty:
            continue
        # The service's own skip rule, so that both do the same work per frame
        [result] = worker.process(
            [frame], lambda f, faces: identifier.skippable(f.t, faces.boxes), [sharpness])
        identifier.observe(frame.t, observations(result))


# --- figures -------------------------------------------------------------------------------------


def p50(values: Sequence[float]) -> float:
    """The median of ``values`` (NaN when there are none)."""
    return float(np.percentile(values, 50)) if len(values) else math.nan


def p95(values: Sequence[float]) -> float:
    """The 95th percentile of ``values`` (NaN when there are none)."""
    return float(np.percentile(values, 95)) if len(values) else math.nan


def ms(seconds: float) -> str:
    """``seconds`` as whole milliseconds for a table cell."""
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.0f}"


def latency_row(system: str, run: LiveRun) -> list[str]:
    """A row of the latency table."""
    frames = run.latencies()
    first, second = run.halves()
    return [system, f"{len(frames) / run.seconds:.2f}", ms(run.model_s()), str(len(frames)),
            ms(p50(frames)), ms(p95(frames)), f"{ms(p95(first))} -> {ms(p95(second))}",
            ms(max(frames, default=math.nan)), str(len(run.event_latencies)),
            ms(p50(run.event_latencies)), ms(p95(run.event_latencies)), ms(p95(run.delivered)),
            str(run.backlog)]


def load() -> str:
    """The machine's 1-minute load average, printed beside timings to judge their noise."""
    return f"load average {os.getloadavg()[0]:.1f}"


def measure_latency(video: Path, worker: TimedWorker) -> None:
    """The latency table: the service against the FIFO baseline."""
    print(f"latency: service, 1 camera, {LATENCY_S:g} s after {WARMUP_S:g} s", file=sys.stderr)
    service = asyncio.run(run_service(service_config(video, 1), worker, LATENCY_S))
    print(f"latency: FIFO baseline, {LATENCY_S:g} s after {WARMUP_S:g} s", file=sys.stderr)
    fifo = run_fifo(video, worker, LATENCY_S)
    print(f"\nlatency: one 1280x720 30 fps camera analysed at {SAMPLE_FPS:g} fps "
          f"({LATENCY_S:g} s measured; frame = capture to the models' result, event = its "
          f"latency_ms, received = capture to the WebSocket client; {load()})")
    print(format_table(
        ("system", "analysed fps", "model ms/frame", "frames", "frame p50 ms", "frame p95 ms",
         "p95 1st -> 2nd half", "frame max ms", "events", "event p50 ms", "event p95 ms",
         "received p95 ms", "backlog"),
        [latency_row("service (latest wins)", service), latency_row("FIFO baseline", fifo)]))


def cameras_row(system: str, cameras: int, run: LiveRun) -> tuple[list[str], bool]:
    """A row of the cameras table and whether that many cameras were sustained."""
    names = [f"cam{i + 1}" for i in range(cameras)]
    fps = [run.counters.get(("facestream_frames_analyzed_total", name), 0.0) / run.seconds
           for name in names]
    drops = []
    for name in names:
        sampled = run.counters.get(("facestream_frames_sampled_total", name), 0.0)
        dropped = run.counters.get(("facestream_frames_dropped_total", name), 0.0)
        drops.append(f"{100 * dropped / sampled:.0f}%" if sampled else "-")
    first, second = run.halves()
    event_p95 = p95(run.event_latencies)  # NaN without events: not sustained
    sustained = (min(fps) >= SUSTAINED_FPS and not run.growing()
                 and event_p95 < MAX_EVENT_P95_S)
    return [system, str(cameras), " ".join(f"{value:.2f}" for value in fps), " ".join(drops),
            ms(run.model_s()), ms(p95(run.latencies())), f"{ms(p95(first))} -> {ms(p95(second))}",
            str(len(run.event_latencies)), ms(event_p95), "yes" if sustained else "no"], sustained


def measure_cameras(video: Path, backends: Sequence[str], seconds: float,
                    max_cameras: int) -> None:
    """The cameras table: for each backend and system, N = 1, 2, ... cameras until N is not
    sustained (or ``max_cameras``), each run ``seconds`` long after the warm-up."""
    rows: list[list[str]] = []
    best: dict[str, int] = {}
    for backend in backends:
        worker = timed_worker(backend)
        for system, max_batch in SYSTEMS:
            label = f"{backend} {system}"
            best[label] = 0
            for cameras in range(1, max_cameras + 1):
                print(f"cameras: {cameras} x {label}, {seconds:g} s after {WARMUP_S:g} s",
                      file=sys.stderr)
                run = asyncio.run(run_service(service_config(video, cameras, max_batch), worker,
                                              seconds))
                row, sustained = cameras_row(label, cameras, run)
                rows.append(row)
                if not sustained:
                    break
                best[label] = cameras
        del worker  # one backend's models in memory at a time
    print(f"\ncameras: 1280x720 30 fps live cameras at {SAMPLE_FPS:g} analysed fps "
          f"({seconds:g} s each; sustained = every camera >= {SUSTAINED_FPS:g} fps, frame p95 "
          f"not growing > {GROWTH_FACTOR:g}x + {GROWTH_SLACK_S * 1000:.0f} ms and "
          f"capture-to-event p95 < {MAX_EVENT_P95_S * 1000:.0f} ms; frame = capture to the "
          f"models' result; {load()} on {os.cpu_count()} cores)")
    print(format_table(("backend, system", "cameras", "analysed fps per camera",
                        "dropped per camera", "model ms/frame", "frame p95 ms",
                        "p95 1st -> 2nd half", "events", "capture-to-event p95 ms",
                        "sustained"), rows))
    capped = f" (at most {max_cameras} tried)"
    print("\ncameras sustained: " + ", ".join(
        f"{label} {count}{capped if count == max_cameras else ''}"
        for label, count in best.items()))


# --- WebSocket fan-out ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientResult:
    """What one WebSocket client received."""

    received: int
    dropped: int  # announced by the server's events.dropped notices
    notices: int  # how many such notices came
    latencies: list[float]  # publish to receive, seconds
    last_at: float  # wall clock of the last event
    longest_gap: float  # seconds without an event between the first and the last


def run_clients(url: str, clients: int, timeout_s: float) -> list[ClientResult]:
    """Connect ``clients`` WebSocket clients to ``url`` and read until the end marker (or
    ``timeout_s``), offering permessage-deflate as browsers do. Runs in a process of its own so
    that the clients do not share the server's interpreter."""
    return asyncio.run(_read_all(url, clients, timeout_s))


async def _read_all(url: str, clients: int, timeout_s: float) -> list[ClientResult]:
    connections = [await connect(url, compression="deflate") for _ in range(clients)]
    return list(await asyncio.gather(*(_read(connection, timeout_s)
                                       for connection in connections)))


async def _read(connection: ClientConnection, timeout_s: float) -> ClientResult:
    received = dropped = notices = 0
    latencies: list[float] = []
    last_at = longest_gap = 0.0
    with contextlib.suppress(TimeoutError, ConnectionClosed):
        async with asyncio.timeout(timeout_s):
            async for message in connection:
                now = time.time()
                event = json.loads(message)
                if event.get("camera") == END:
                    break
                if event["type"] == "events.dropped":
                    dropped += event["dropped"]
                    notices += 1
                    continue
                if received:
                    longest_gap = max(longest_gap, now - last_at)
                received += 1
                latencies.append(now - datetime.fromisoformat(event["time"]).timestamp())
                last_at = now
    await connection.close()
    return ClientResult(received, dropped, notices, latencies, last_at, longest_gap)


def appeared(number: int, face: np.ndarray) -> PersonAppeared:
    """A ``person.appeared`` made now, with ``face`` as its thumbnail (encoded by the bus)."""
    now = time.time()
    return PersonAppeared(camera="cam1", person=f"p{number % 50 + 1}", name=None,
                          appearance=f"cam1-{number}", new=False,
                          frame_time=round(number / FANOUT_RATE, 3), captured_at=now, time=now,
                          box=(412.0, 359.0, 594.0, 594.0), score=0.9987, distance=0.3,
                          confidence=0.5, thumbnail=face, latency_ms=0.0)


@dataclass(frozen=True)
class Fanout:
    """One fan-out run."""

    clients: int
    published: int
    publish_s: float
    started: float  # wall clock of the first publication
    results: list[ClientResult]


async def run_fanout(clients: int) -> Fanout:
    """Publish to ``clients`` WebSocket clients of the real app for ``FANOUT_S`` seconds."""
    bus = EventBus(replay=0)
    settings = ServerSettings(port=0)
    app, endpoint = build_app(bus, settings, Metrics(), replay_limit=0,
                              health=lambda: Health(status="ok", uptime_s=0.0, cameras={},
                                                         identities=0, present=0))
    server, server_task, port = await start_server(app, settings)
    loop = asyncio.get_running_loop()
    # A textured face-sized crop: its JPEG is about as big as a real face's
    face = np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)
    count = round(FANOUT_RATE * FANOUT_S)
    try:
        with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
            reading = loop.run_in_executor(pool, run_clients, f"ws://127.0.0.1:{port}/events",
                                           clients, FANOUT_S + 60)
            async with asyncio.timeout(120):
                while len(bus.subscriptions) < clients:
                    await asyncio.sleep(0.05)
            started, begun = time.time(), loop.time()
            for number in range(count):
                # sleep(0) too: a late publisher still lets the senders run between events
                await asyncio.sleep(max(0.0, begun + number / FANOUT_RATE - loop.time()))
                bus.publish(appeared(number, face))
            publish_s = loop.time() - begun
            # The newest event: never dropped
            bus.publish(CameraStatusChanged(camera=END, status="stopped", reason=None,
                                            time=time.time()))
            results = await reading
    finally:
        await endpoint.close()
        server.should_exit = True
        await server_task
    return Fanout(clients, count, publish_s, started, results)


def fanout_row(system: str, run: Fanout) -> list[str]:
    """A row of the fan-out table."""
    latencies = [lat for result in run.results for lat in result.latencies]
    received = sum(result.received for result in run.results)
    dropped = sum(result.dropped for result in run.results)
    notices = sum(result.notices for result in run.results)
    lost = run.published * run.clients - received - dropped
    last = max((result.last_at for result in run.results), default=run.started)
    span = max(last - run.started, run.publish_s)
    return [system, str(run.clients), f"{run.published / run.publish_s:.0f}",
            f"{received / span:.0f}", f"{received / span / run.clients:.0f}",
            f"{(received + notices) / span:.0f}",
            ms(p50(latencies)), ms(p95(latencies)), ms(max(latencies, default=math.nan)),
            str(dropped), str(lost),
            f"{max(result.longest_gap for result in run.results):.1f}"]


def measure_fanout() -> None:
    """The fan-out table: 1 client against ``FANOUT_CLIENTS``."""
    rows = []
    for system, clients in (("baseline", 1), ("fan-out", FANOUT_CLIENTS)):
        print(f"fanout: {system}, {clients} client(s), {FANOUT_RATE:g} events/s for "
              f"{FANOUT_S:g} s", file=sys.stderr)
        rows.append(fanout_row(system, asyncio.run(run_fanout(clients))))
    print("\nfanout: person.appeared events (a 120 px textured face as thumbnail) "
          f"published at {FANOUT_RATE:g}/s for {FANOUT_S:g} s to WebSocket clients in another "
          "process (delivered = events, total over clients; messages = events and "
          "events.dropped notices; dropped = announced by the notices; "
          f"longest gap = a client's longest time without an event; {load()})")
    print(format_table(("system", "clients", "published/s", "delivered/s", "per client/s",
                        "messages/s", "p50 ms", "p95 ms", "max ms", "dropped", "lost",
                        "longest gap s"), rows))


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.live", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("part", nargs="?", choices=(*PARTS, "all"), default="all")
    parser.add_argument("--backend", action="append", choices=NAMED_BACKENDS, default=None,
                        help="cameras: this backend only (repeatable; default both)")
    parser.add_argument("--seconds", type=float, default=CAMERAS_S,
                        help=f"cameras: seconds measured per run (default {CAMERAS_S:g})")
    parser.add_argument("--max-cameras", type=int, default=MAX_CAMERAS,
                        help=f"cameras: the most cameras tried (default {MAX_CAMERAS})")
    parser.add_argument("--dir", type=Path, default=None,
                        help="cache directory (default: $FACESTREAM_BENCH_DIR or "
                        "benchmarks/.cache)")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.max_cameras < 1:
        parser.error("--seconds must be positive and --max-cameras at least 1")
    parts = PARTS if args.part == "all" else (args.part,)
    if "latency" in parts or "cameras" in parts:
        video, _ = build("speed", args.dir or bench_dir())
        print(f"video: {video}", file=sys.stderr)
        if "latency" in parts:
            measure_latency(video, timed_worker("auto"))
        if "cameras" in parts:
            measure_cameras(video, args.backend or NAMED_BACKENDS, args.seconds,
                            args.max_cameras)
    if "fanout" in parts:
        measure_fanout()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
