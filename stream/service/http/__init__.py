"""The HTTP side of the live service (Starlette on uvicorn), one module per concern:

- :mod:`.events`: ``/events``, the WebSocket of events (one sink per client);
- :mod:`.persons`: the gallery's REST API under ``/api/persons``;
- :mod:`.cameras`: ``/api/cameras`` and each camera's preview;
- :mod:`.auth`: the optional shared token, and errors as ``{"error": ...}``;
- :mod:`.openapi`: routes and their ``/api/openapi.json``, made from one list.

This module puts them together with ``/healthz``, ``/metrics`` and the dashboard's files.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount
from starlette.staticfiles import StaticFiles

from stream.config import ServerSettings
from stream.service.bus import EventBus
from stream.service.http import events
from stream.service.http.auth import guard
from stream.service.http.cameras import CamerasApi
from stream.service.http.events import EventsSocket
from stream.service.http.openapi import Api, Operation, Reply, text
from stream.service.http.persons import PersonsApi
from stream.service.metrics import Metrics

if TYPE_CHECKING:
    from stream.pipeline.live import Engine  # the models' thread: torch

__all__ = ["Health", "build_app"]
DASHBOARD = Path(__file__).parents[2] / "dashboard"


class Health(BaseModel):
    """``/healthz``: "failing" once the model thread died."""

    status: Literal["ok", "failing"]
    uptime_s: float
    cameras: dict[str, str]  # name -> state
    identities: int
    present: int  # open appearances, on all cameras


def build_app(bus: EventBus, settings: ServerSettings, metrics: Metrics, *,
              replay_limit: int, health: Callable[[], Health],
              engine: Engine | None = None) -> tuple[Starlette, EventsSocket]:
    """The ASGI app and its events endpoint (to close it in order at shutdown). With
    ``engine``, the gallery's and the cameras' REST API is served too."""
    token = settings.token.get_secret_value() if settings.token else None
    api = Api(guard(token))
    socket = EventsSocket(bus, settings, metrics, replay_limit)
    api.websocket("/events", socket.handle, events.OPERATION)

    async def healthz(_: Request) -> Response:
        document = health()
        return JSONResponse(document.model_dump(), 200 if document.status == "ok" else 503)

    async def metrics_text(_: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def openapi(_: Request) -> Response:
        return JSONResponse(description)

    api.add("GET", "/healthz", healthz, Operation("Health of the service", {
        200: Reply("healthy", Health), 503: Reply("the model thread failed", Health)}))
    api.add("GET", "/metrics", metrics_text, Operation("Prometheus metrics", {
        200: text("the metrics in the Prometheus text format")}))
    api.add("GET", "/api/openapi.json", openapi, Operation("This description", {
        200: Reply("an OpenAPI 3.1 document", {"type": "object"})}))
    if engine is not None:
        PersonsApi(engine, bus).add_to(api)
        CamerasApi(engine).add_to(api)
    description = api.document()
    # The dashboard's files hold no data: they are served without the token, and ask for it.
    routes = [*api.routes, Mount("/", app=StaticFiles(directory=DASHBOARD, html=True,
                                                      check_dir=False), name="dashboard")]
    return Starlette(routes=routes), socket
