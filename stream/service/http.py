"""The HTTP side of the live service (Starlette on uvicorn): ``/events`` (WebSocket),
``/healthz`` and ``/metrics``, behind an optional shared token."""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.config import ServerSettings
from stream.service.bus import EventBus, Subscription
from stream.service.metrics import Metrics

log = logging.getLogger(__name__)
UNAUTHORIZED = "a valid token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"


def _authorized(connection: HTTPConnection, token: str | None) -> bool:
    if token is None:
        return True
    header = connection.headers.get("authorization", "")
    given = header[7:] if header.lower().startswith("bearer ") else connection.query_params.get(
        "token", "")
    return hmac.compare_digest(given.encode(), token.encode())


class EventsEndpoint:
    """``GET /events``: a WebSocket of events as JSON text messages.

    Query parameters: ``camera`` (repeat it, or separate names with commas) keeps only those
    cameras' events; ``replay=N`` first sends up to N recent events. Each client has its own
    bounded queue: a slow one loses its oldest events (and is sent ``events.dropped``).
    """

    def __init__(self, bus: EventBus, settings: ServerSettings, metrics: Metrics,
                 replay_limit: int) -> None:
        self._bus = bus
        self._settings = settings
        self._metrics = metrics
        self._replay_limit = replay_limit
        self._token = settings.token.get_secret_value() if settings.token else None
        self._clients: set[Subscription] = set()

    async def handle(self, websocket: WebSocket) -> None:
        if not _authorized(websocket, self._token):
            await websocket.send_denial_response(PlainTextResponse(UNAUTHORIZED, 401))
            return
        params = websocket.query_params
        cameras = [name for value in params.getlist("camera") for name in value.split(",")
                   if name]
        try:
            replay = min(max(int(params.get("replay", "0")), 0), self._replay_limit)
        except ValueError:
            await websocket.send_denial_response(PlainTextResponse(
                "replay must be a whole number of events", 400))
            return
        await websocket.accept()
        subscription = self._bus.subscribe(self._settings.client_queue,
                                           cameras=cameras or None, replay=replay,
                                           consumer="websocket")
        self._clients.add(subscription)
        self._metrics.ws_clients.inc()
        receiver = asyncio.create_task(self._receive(websocket))
        try:
            await self._send(websocket, subscription, receiver)
        finally:
            receiver.cancel()
            subscription.close()
            self._clients.discard(subscription)
            self._metrics.ws_clients.dec()

    async def _send(self, websocket: WebSocket, subscription: Subscription,
                    receiver: asyncio.Task[None]) -> None:
        try:
            while not receiver.done():
                getter = asyncio.ensure_future(subscription.get())
                await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
                if not getter.done():
                    getter.cancel()
                    return
                try:
                    event = getter.result()
                except EOFError:  # shutting down: the queue was drained
                    await websocket.close(1001, "facestream is shutting down")
                    return
                if event["type"] == "events.dropped":
                    self._metrics.ws_dropped.inc(event["dropped"])
                await websocket.send_text(json.dumps(event))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    async def _receive(self, websocket: WebSocket) -> None:
        """Reads (and ignores) what the client sends, to notice when it goes away."""
        try:
            while True:
                message = await websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    def queued(self) -> int:
        """Events waiting in all clients' queues."""
        return sum(len(client) for client in self._clients)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Let every client receive what is queued for it, then close the connections."""
        for client in list(self._clients):
            client.close()
        deadline = time.monotonic() + timeout_s
        while self._clients and time.monotonic() < deadline:
            await asyncio.sleep(0.05)


def build_app(bus: EventBus, settings: ServerSettings, metrics: Metrics, *,
              replay_limit: int, health: Callable[[], dict[str, Any]]) -> tuple[Starlette,
                                                                              EventsEndpoint]:
    """The ASGI app and its events endpoint (for an orderly shutdown)."""
    token = settings.token.get_secret_value() if settings.token else None
    events = EventsEndpoint(bus, settings, metrics, replay_limit)

    def guard(handler: Callable[[Request], Response]) -> Callable[[Request], Any]:
        async def guarded(request: Request) -> Response:
            if not _authorized(request, token):
                return PlainTextResponse(UNAUTHORIZED, 401,
                                         headers={"WWW-Authenticate": "Bearer"})
            return handler(request)
        return guarded

    def healthz(_: Request) -> Response:
        document = health()
        return JSONResponse(document, 200 if document["status"] == "ok" else 503)

    def metrics_text(_: Request) -> Response:
        depths = {"websocket": 0, "mqtt": 0}
        for subscription in bus.subscriptions:
            depths[subscription.consumer] = depths.get(subscription.consumer, 0) + len(
                subscription)
        for consumer, depth in depths.items():
            metrics.queue_depth.labels(consumer).set(depth)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    app = Starlette(routes=[
        WebSocketRoute("/events", events.handle),
        Route("/healthz", guard(healthz)),
        Route("/metrics", guard(metrics_text)),
    ])
    return app, events
