"""The HTTP side of the live service (Starlette on uvicorn), one module per concern:

- :mod:`.access`: ``Host``, ``Origin`` and body checks before any route, and refusals logged
  at a bounded rate;
- :mod:`.events`: ``/events``, the WebSocket of events (one sink per client);
- :mod:`.persons`: the gallery's REST API under ``/api/persons``;
- :mod:`.cameras`: ``/api/cameras`` and each camera's preview;
- :mod:`.recognize`: ``/api/recognize``, who is in a photo;
- :mod:`.auth`: the optional shared token, and errors as ``{"error": ...}``;
- :mod:`.openapi`: routes and their ``/api/openapi.json``, made from one list.

This module puts them together with ``/healthz``, ``/metrics`` and the dashboard's files. Every
answer the service makes itself is JSON, unknown routes and methods included.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, WebSocketRoute
from starlette.staticfiles import StaticFiles

from stream.config import ServerSettings
from stream.service.bus import EventBus
from stream.service.http import events
from stream.service.http.access import AccessGuard, Refusals
from stream.service.http.auth import authorized, guard, problem
from stream.service.http.cameras import CamerasApi
from stream.service.http.events import EventsSocket
from stream.service.http.openapi import Api, Operation, Reply, text
from stream.service.http.persons import PersonsApi
from stream.service.http.recognize import RecognizeApi
from stream.service.metrics import Metrics

if TYPE_CHECKING:
    from stream.pipeline.live import Engine  # the models' thread: torch

__all__ = ["Health", "build_app"]
DASHBOARD = Path(__file__).parents[2] / "dashboard"


class Health(BaseModel):
    """``/healthz``: "failing" once the model thread died. The other fields are given only to
    requests the token admits (all, when there is no token)."""

    status: Literal["ok", "failing"]
    uptime_s: float | None = None
    cameras: dict[str, str] | None = None  # name -> state
    identities: int | None = None
    present: int | None = None  # open appearances, on all cameras
    persistence_error: str | None = None  # why the gallery refuses writes (they are retried)


def build_app(bus: EventBus, settings: ServerSettings, metrics: Metrics, *,
              replay_limit: int, health: Callable[[], Health],
              engine: Engine | None = None) -> tuple[Starlette, EventsSocket]:
    """The ASGI app and its events endpoint (to close it in order at shutdown). With
    ``engine``, the gallery's and the cameras' REST API is served too."""
    token = settings.token.get_secret_value() if settings.token else None
    refusals = Refusals()
    api = Api(guard(token, refusals))
    socket = EventsSocket(bus, settings, metrics, replay_limit, refusals=refusals)
    api.websocket("/events", socket.handle, events.OPERATION)

    async def healthz(request: Request) -> Response:
        document = health()
        # Liveness for anyone (a container's health check); the details need the token.
        shown = document.model_dump() if authorized(request, token) else {
            "status": document.status}
        return JSONResponse(shown, 200 if document.status == "ok" else 503)

    async def metrics_text(_: Request) -> Response:
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    async def openapi(_: Request) -> Response:
        return JSONResponse(description)

    api.add("GET", "/healthz", healthz, Operation(
        "Health of the service: the status for anyone, the details with the token", {
            200: Reply("healthy", Health), 503: Reply("the model thread failed", Health)}),
        public=True)
    api.add("GET", "/metrics", metrics_text, Operation("Prometheus metrics", {
        200: text("the metrics in the Prometheus text format")}))
    api.add("GET", "/api/openapi.json", openapi, Operation("This description", {
        200: Reply("an OpenAPI 3.1 document", {"type": "object"})}))
    if engine is not None:
        PersonsApi(engine, bus).add_to(api)
        CamerasApi(engine).add_to(api)
        RecognizeApi(engine).add_to(api)
    description = api.document()
    # The dashboard's files hold no data: they are served without the token, and ask for it.
    routes = [*api.routes, Mount("/", app=StaticFiles(directory=DASHBOARD, html=True,
                                                      check_dir=False), name="dashboard")]
    websockets = frozenset(route.path for route in api.routes if isinstance(route, WebSocketRoute))
    _quiet_uvicorn_denials()
    return Starlette(routes=routes, middleware=[Middleware(
        AccessGuard, settings=settings, refusals=refusals, websockets=websockets,
        uploads=frozenset(api.uploads))],
        exception_handlers={HTTPException: _http_error, Exception: _internal_error}), socket


async def _http_error(_: Request, error: Exception) -> Response:
    """Starlette's own refusals (no such route or file, a method a route does not take)."""
    assert isinstance(error, HTTPException)
    message = {404: "no such route (the API is described at /api/openapi.json)",
               405: "this route does not take that method"}.get(error.status_code, error.detail)
    return problem(error.status_code, message, dict(error.headers or {}))


async def _internal_error(_: Request, __: Exception) -> Response:
    # A bug: uvicorn logs its traceback after this answer.
    return problem(500, "internal error; the service's log tells more")


class _DenialNoise(logging.Filter):
    """uvicorn's websockets-sansio protocol logs this ERROR after every WebSocket refused with a
    response (the token, the origin), although the refusal was sent: those refusals are logged
    by :class:`Refusals`, at a bounded rate."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "ASGI callable returned without completing handshake."


_DENIAL_NOISE = _DenialNoise()


def _quiet_uvicorn_denials() -> None:
    logging.getLogger("uvicorn.error").addFilter(_DENIAL_NOISE)  # idempotent: the same filter
