"""The live path as an accuracy benchmark system: the real service (``facestream run``'s
``serve``) on a video played as a live camera, its events read by a real WebSocket client, and
written as an analyze-like output so that the same scoring applies.

The events are what a live consumer gets: ``person.left`` gives the appearances, and each
``person.appeared`` / ``person.updated`` a face (its ``frame_time`` and ``box``) labelled as it
was announced. So the live BCubed scores are over the announced faces only, and its recall is
over the frames they are on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from functools import cache
from pathlib import Path
from typing import Any

from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from stream.config import (
    CameraConfig,
    EngineSettings,
    EventSettings,
    ServerSettings,
    ServiceConfig,
)
from stream.service.app import serve
from stream.sources import probe
from stream.vision.executor import VisionWorker

CAMERA = "bench"
SAMPLE_FPS = 5.0  # a camera's default


@cache
def service_worker() -> VisionWorker:
    """The models of the service's default engine settings, loaded once."""
    return VisionWorker.from_settings(EngineSettings())


def analyze_live(video: Path, out: Path, *, sample_fps: float = SAMPLE_FPS,
                 worker: VisionWorker | None = None) -> None:
    """Play ``video`` live (its own frame rate, newest frame wins, ``sample_fps`` analysed)
    through the real service and write ``out/report.json`` and ``out/detections.jsonl`` from
    the events it published. ``worker``: these models (default: :func:`service_worker`)."""
    config = ServiceConfig(
        cameras=[CameraConfig(name=CAMERA, url=str(video), sample_fps=sample_fps)],
        server=ServerSettings(port=0), events=EventSettings(replay=10000))
    events = asyncio.run(_collect(config, worker or service_worker()))
    (out / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events))
    fps = probe(video).fps
    write_output(out, events, fps=fps, half_step=0.5 / sample_fps)


async def _collect(config: ServiceConfig, worker: VisionWorker) -> list[dict[str, Any]]:
    loop = asyncio.get_running_loop()
    ready: asyncio.Future[str] = loop.create_future()
    service = asyncio.create_task(serve(config, worker=worker, on_ready=ready.set_result))
    racing: set[asyncio.Future[Any]] = {ready, service}
    await asyncio.wait(racing, return_when=asyncio.FIRST_COMPLETED)
    if service.done():
        service.result()
        raise RuntimeError("the service ended before it was ready")
    events: list[dict[str, Any]] = []
    url = ready.result().replace("http://", "ws://") + "/events?replay=10000"
    async with connect(url, max_size=None) as websocket:
        with contextlib.suppress(ConnectionClosed):
            async for message in websocket:
                events.append(json.loads(message))
    await service  # the file ended: the service stops by itself
    return events


def write_output(out: Path, events: list[dict[str, Any]], *, fps: float, half_step: float
                 ) -> None:
    """An analyze-like output of live events (see the module's docstring)."""
    spans: dict[str, list[tuple[float, float]]] = {}
    for event in events:
        if event["type"] == "person.left":
            spans.setdefault(event["person"], []).append(
                (max(0.0, event["start_frame_time"] - half_step),
                 event["end_frame_time"] + half_step))
    faces = [event for event in events
             if event["type"] in ("person.appeared", "person.updated")]
    frames = sorted({round(event["frame_time"] * fps) for event in faces})
    persons = [{"id": person, "appearances": [{"start_s": s, "end_s": e}
                                              for s, e in sorted(items)]}
               for person, items in spans.items()]
    report = {"schema": "facestream.report/1", "persons": persons,
              "frames_decoded": 0, "frames_analyzed": len(frames), "analyzed_frames": frames}
    (out / "report.json").write_text(json.dumps(report))
    (out / "detections.jsonl").write_text("".join(
        json.dumps({"frame": round(e["frame_time"] * fps), "t": e["frame_time"],
                    "box": e["box"], "score": e["score"], "person": e["person"]}) + "\n"
        for e in faces))
