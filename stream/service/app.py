"""``facestream run``: cameras, the model thread, the event bus, the HTTP server and MQTT, started
and stopped in data-flow order."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import Callable, Generator
from typing import Any

import uvicorn
from starlette.types import ASGIApp

from stream.config import ServerSettings, ServiceConfig, redact_url
from stream.errors import InputError, StreamError
from stream.pipeline.appearances import Event, status_event
from stream.identity.gallery import open_gallery
from stream.service.bus import EventBus
from stream.pipeline.live import Engine
from stream.service.http import build_app
from stream.service.metrics import Metrics
from stream.service.mqtt import MqttPublisher
from stream.sources import Camera, CameraStatus
from stream.vision.embed import default_embedder_name
from stream.vision.executor import VisionWorker, pick_device

log = logging.getLogger(__name__)


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def start_server(app: ASGIApp, settings: ServerSettings,
                       listener: socket.socket | None = None
                       ) -> tuple[HttpServer, asyncio.Task[None], int]:
    """Serve ``app`` on uvicorn in this loop (on ``listener`` when given, bound with
    :func:`listen`); returns the server, its task and its port.

    Stop it with ``server.should_exit = True`` and await the task.
    """
    server = HttpServer(uvicorn.Config(
        app, ws="websockets-sansio", ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s, lifespan="off", log_level="warning",
        # Thumbnails (JPEG) barely compress; deflating every message for every client cost
        # a third of the fan-out throughput.
        ws_per_message_deflate=False))
    listener = listener or listen(settings.host, settings.port)
    task = asyncio.create_task(server.serve(sockets=[listener]))
    while not server.started:
        if task.done():
            task.result()
            raise StreamError(f"the HTTP server on {settings.host}:{settings.port} stopped "
                              "while starting")
        await asyncio.sleep(0.02)
    return server, task, int(listener.getsockname()[1])


def listen(host: str, port: int) -> socket.socket:
    """A listening socket: bound before anything else starts, so that a taken port is a clear
    error at once."""
    try:
        family, kind, _, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        listener = socket.socket(family, kind)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind(address)
            listener.listen(128)
        except OSError:
            listener.close()
            raise
    except OSError as error:
        raise InputError(f"cannot listen on {host}:{port} ({error.strerror or error}); choose "
                         "another --port or --host") from None
    return listener


def load_worker(config: ServiceConfig) -> VisionWorker:
    """The models, as the configuration asks (raises ``ModelError`` when weights are missing)."""
    engine = config.engine
    return VisionWorker(embedder=engine.embedder or default_embedder_name(),
                        device=pick_device(engine.device), detect_width=engine.detect_width,
                        weights=engine.weights, allow_download=engine.allow_download)


async def serve(config: ServiceConfig, *, worker: VisionWorker | None = None,
                stop: asyncio.Event | None = None,
                on_ready: Callable[[str], None] | None = None) -> None:
    """Run the service until ``stop`` is set, or SIGINT/SIGTERM when run in the main thread.

    ``on_ready`` is given the server's base URL once it listens and the cameras are started.
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    listener = listen(config.server.host, config.server.port)
    metrics = Metrics()

    def observe(event: Event) -> None:
        metrics.events.labels(event["type"]).inc()
        if "latency_ms" in event:
            metrics.event_latency.observe(event["latency_ms"] / 1000)

    bus = EventBus(config.events.replay, observe)

    def emit(event: Event) -> None:  # from other threads
        loop.call_soon_threadsafe(bus.publish, event)

    def on_status(status: CameraStatus) -> None:  # from the camera threads
        emit(status_event(status.camera, status.state, status.reason, status.retry_in_s,
                          time.time()))

    if worker is None:
        log.info("loading the models")
        worker = await asyncio.to_thread(load_worker, config)
    embedder = worker.embedder
    log.info("models: %s on %s", embedder.name, worker.device)
    gallery = open_gallery(config.gallery.path if config.gallery else None, dim=embedder.dim,
                           embedder=embedder.name, version=embedder.version)
    if config.gallery is not None:
        log.info("gallery %s: %d people", config.gallery.path, len(gallery))
    frame_ready = threading.Event()
    cameras = [Camera(camera, config.sources, detect_width=worker.detector.detect_width,
                      on_status=on_status, frame_ready=frame_ready)
               for camera in config.cameras]
    metrics.watch_cameras(lambda: cameras)
    engine = Engine(worker, cameras, frame_ready, gallery=gallery, engine=config.engine,
                    events=config.events, emit=emit, metrics=metrics,
                    retention_days=config.gallery.retention_days if config.gallery else None)

    def health() -> dict[str, Any]:
        return {"status": "ok" if engine.error is None else "failing",
                "uptime_s": round(time.monotonic() - started, 1),
                "cameras": {camera.name: camera.stats.state for camera in cameras},
                "identities": len(engine.gallery), "present": len(engine.appearances)}

    app, events_endpoint = build_app(bus, config.server, metrics,
                                     replay_limit=config.events.replay, health=health,
                                     engine=engine)
    server, server_task, port = await start_server(app, config.server, listener)
    engine.start()
    base_url = f"http://{config.server.host}:{port}"
    publisher = MqttPublisher(config.mqtt, bus) if config.mqtt is not None else None
    mqtt_task = None
    if publisher is not None:
        mqtt_task = asyncio.create_task(publisher.run())
        metrics.mqtt_connected.set_function(lambda: float(publisher.connected))
    for camera in cameras:
        camera.start()
    log.info("listening on %s (events: ws://%s:%d/events); %d camera(s): %s", base_url,
             config.server.host, port, len(cameras),
             ", ".join(f"{c.name}={redact_url(c.url)}" for c in config.cameras))
    if on_ready is not None:
        on_ready(base_url)
    try:
        while not stop.is_set() and engine.is_alive():
            if not any(camera.is_alive() for camera in cameras):
                log.info("every camera has ended (files without --loop)")
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.5)
    finally:
        log.info("shutting down: stopping the cameras")
        for camera in cameras:
            camera.stop()
        await asyncio.to_thread(_join_all, cameras)
        engine.stop()
        await asyncio.to_thread(engine.join, 30.0)
        if not engine.is_alive():
            gallery.store.close()
        await asyncio.sleep(0.05)  # the events the threads handed over are published
        log.info("flushing %d event(s) to clients", events_endpoint.queued())
        await events_endpoint.close()
        if publisher is not None and mqtt_task is not None:
            await publisher.close()
            await mqtt_task
        server.should_exit = True
        await server_task
    if engine.error is not None:
        raise StreamError(f"the model thread failed: {engine.error}; run with --debug for "
                          "details")
    failed = [camera for camera in cameras if camera.stats.state == "failed"]
    if failed and len(failed) == len(cameras):
        raise InputError("every camera failed: " + "; ".join(
            f"{camera.name}: {camera.stats.reason}" for camera in failed))
    log.info("stopped")


def _join_all(cameras: list[Camera]) -> None:
    for camera in cameras:
        camera.join(10.0)
