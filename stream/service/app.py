"""``facestream run``: cameras, the model thread, the event bus, the sinks (WebSocket clients,
MQTT) and the HTTP server, as one ``AsyncExitStack`` and one ``TaskGroup`` of named tasks.

Resources are entered in the reverse of the shutdown order, so leaving the stack shuts down in
data-flow order: stop the cameras; drain the model thread (it analyses what it took and emits
``person.left`` for every open appearance) and publish what it handed over; close the gallery;
flush the sinks; close the HTTP server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable, Generator

import uvicorn
from starlette.types import ASGIApp

from stream.codec import EventEncoder
from stream.config import ServerSettings, ServiceConfig, redact_url
from stream.errors import InputError, StreamError
from stream.pipeline.live import Engine
from stream.service.bus import EventBus
from stream.service.http import Health, build_app
from stream.service.metrics import Metrics
from stream.service.net import listen
from stream.service.sinks import build_sinks
from stream.sources import Camera, CameraStatus, hardware_decoding
from stream.storage import open_gallery
from stream.types import CameraStatusChanged, Event
from stream.vision.executor import VisionWorker

log = logging.getLogger(__name__)
ENGINE_JOIN_S = 30.0  # the model thread's last frames and appearances, at shutdown
CAMERA_JOIN_S = 10.0


class HttpServer(uvicorn.Server):
    """uvicorn without its own signal handling: the service orders the shutdown itself."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


async def start_server(app: ASGIApp, settings: ServerSettings,
                       listener: socket.socket | None = None, *,
                       tasks: asyncio.TaskGroup | None = None
                       ) -> tuple[HttpServer, asyncio.Task[None], int]:
    """Serve ``app`` on uvicorn in this loop (on ``listener`` when given, bound with
    :func:`listen`; in ``tasks`` when given); returns the server, its task and its port.

    Stop it with ``server.should_exit = True`` and await the task.
    """
    server = HttpServer(uvicorn.Config(
        app, ws="websockets-sansio", ws_ping_interval=settings.ping_interval_s,
        ws_ping_timeout=settings.ping_timeout_s, lifespan="off", log_level="warning",
        # Thumbnails (JPEG) barely compress; deflating every message for every client cost
        # a third of the fan-out throughput.
        ws_per_message_deflate=False))
    listener = listener or listen(settings.host, settings.port)
    serving = server.serve(sockets=[listener])
    task = (tasks.create_task(serving, name="http server") if tasks is not None
            else asyncio.create_task(serving, name="http server"))
    while not server.started:
        if task.done():
            task.result()
            raise StreamError(f"the HTTP server on {settings.host}:{settings.port} stopped "
                              "while starting")
        await asyncio.sleep(0.02)
    return server, task, int(listener.getsockname()[1])


async def serve(config: ServiceConfig, *, worker: VisionWorker | None = None,
                stop: asyncio.Event | None = None,
                on_ready: Callable[[str], None] | None = None,
                listener: socket.socket | None = None) -> None:
    """Run the service until ``stop`` is set, or SIGINT/SIGTERM when run in the main thread.

    ``on_ready`` is given the server's base URL once it listens and the cameras are started.
    ``listener``: the socket to serve on, bound by :func:`~stream.service.net.listen` (by
    default it is bound here).
    """
    loop = asyncio.get_running_loop()
    stop = stop or asyncio.Event()
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
    started = time.monotonic()
    listener = listener or listen(config.server.host, config.server.port)
    metrics = Metrics()
    bus = EventBus(config.events.replay,
                   encoder=EventEncoder(config.events.thumbnail_px, node=config.node),
                   metrics=metrics)
    metrics.watch_queues(bus.depths)

    def emit(event: Event) -> None:  # from the model and camera threads
        loop.call_soon_threadsafe(bus.publish, event)

    def on_status(status: CameraStatus) -> None:
        emit(CameraStatusChanged(camera=status.camera, status=status.state,
                                 reason=status.reason, time=time.time(),
                                 retry_in_s=status.retry_in_s))

    if worker is None:
        log.info("loading the models")
        worker = await asyncio.to_thread(VisionWorker.from_settings, config.engine)
    embedder = worker.embedder
    log.info("models: %s on %s", embedder.name, worker.device)
    gallery = open_gallery(config.gallery.location if config.gallery else None, dim=embedder.dim,
                           embedder=embedder.name, version=embedder.version)
    if config.gallery is not None:
        log.info("gallery %s: %d people", config.gallery.location, len(gallery))
    frame_ready = threading.Event()
    decoding = hardware_decoding(config.engine.decoder, str(worker.device))
    cameras = [Camera(camera, config.sources, detect_width=worker.detector.detect_width,
                      on_status=on_status, frame_ready=frame_ready,
                      batch=config.engine.max_batch_frames, hwaccel=decoding)
               for camera in config.cameras]
    metrics.watch_cameras(lambda: cameras)
    metrics.watch_searches(lambda: gallery.searches)
    engine = Engine(worker, cameras, frame_ready, gallery=gallery, engine=config.engine,
                    events=config.events, emit=emit, metrics=metrics,
                    retention_days=config.gallery.retention_days if config.gallery else None)

    def health() -> Health:
        return Health(status="ok" if engine.error is None else "failing",
                      uptime_s=round(time.monotonic() - started, 1),
                      cameras={camera.name: camera.stats.state for camera in cameras},
                      identities=len(engine.gallery), present=engine.present(),
                      persistence_error=engine.persistence_error)

    app, events_socket = build_app(bus, config.server, metrics,
                                   replay_limit=config.events.replay, health=health,
                                   engine=engine)

    @contextlib.asynccontextmanager
    async def http_server(tasks: asyncio.TaskGroup) -> AsyncIterator[int]:
        server, task, port = await start_server(app, config.server, listener, tasks=tasks)
        try:
            yield port
        finally:
            server.should_exit = True
            await task

    async def flush_events_socket() -> None:
        log.info("flushing %d event(s) to WebSocket clients", events_socket.queued())
        await events_socket.close()

    def close_gallery() -> None:
        if not engine.is_alive():  # else the thread still uses it (it is a daemon)
            gallery.store.close()

    async def drain_engine() -> None:
        engine.stop()
        await asyncio.to_thread(engine.join, ENGINE_JOIN_S)
        await _handed_over(loop)

    async def stop_cameras() -> None:
        log.info("shutting down: stopping the cameras")
        for camera in cameras:
            camera.stop()
        await asyncio.to_thread(_join_all, cameras)

    try:
        async with contextlib.AsyncExitStack() as stack:
            tasks = await stack.enter_async_context(asyncio.TaskGroup())
            port = await stack.enter_async_context(http_server(tasks))
            stack.push_async_callback(flush_events_socket)
            for sink in build_sinks(config, metrics, gallery):
                # Subscribed before anything is published, so the sink misses nothing.
                subscription = bus.subscribe(sink.queue, consumer=sink.consumer)
                await stack.enter_async_context(sink)
                tasks.create_task(sink.run(subscription), name=f"{sink.consumer} sink")
            stack.callback(close_gallery)
            stack.push_async_callback(drain_engine)
            engine.start()
            stack.push_async_callback(stop_cameras)
            for camera in cameras:
                camera.start()
            base_url = f"http://{config.server.host}:{port}"
            log.info("listening on %s (events: ws://%s:%d/events); %d camera(s): %s",
                     base_url, config.server.host, port, len(cameras),
                     ", ".join(f"{c.name}={redact_url(c.url)}" for c in config.cameras))
            if on_ready is not None:
                on_ready(base_url)
            await _until_done(stop, engine, cameras)
    except* StreamError as errors:  # raised inside the task group: report it plainly
        raise errors.exceptions[0] from None
    if engine.error is not None:
        raise StreamError(f"the model thread failed: {engine.error}; run with --debug for "
                          "details")
    failed = [camera for camera in cameras if camera.stats.state == "failed"]
    if failed and len(failed) == len(cameras):
        raise InputError("every camera failed: " + "; ".join(
            f"{camera.name}: {camera.stats.reason}" for camera in failed))
    log.info("stopped")


async def _until_done(stop: asyncio.Event, engine: Engine, cameras: list[Camera]) -> None:
    """Until ``stop`` is set, the model thread ends, or every camera has ended."""
    while not stop.is_set() and engine.is_alive():
        if not any(camera.is_alive() for camera in cameras):
            log.info("every camera has ended (files without --loop)")
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.5)


async def _handed_over(loop: asyncio.AbstractEventLoop) -> None:
    """Returns once the loop has run every callback other threads handed it before now (they
    run in order): the events of threads that have ended are then published."""
    done = loop.create_future()
    loop.call_soon_threadsafe(done.set_result, None)
    await done


def _join_all(cameras: list[Camera]) -> None:
    for camera in cameras:
        camera.join(CAMERA_JOIN_S)
