"""``GET /events``: a WebSocket of events as JSON text messages, one sink per client."""

from __future__ import annotations

import asyncio
import contextlib
import re

from starlette.websockets import WebSocket

from stream.config import ServerSettings
from stream.service.bus import EventBus, Subscription
from stream.service.http.access import Refusals
from stream.service.http.auth import UNAUTHORIZED, authorized, problem, refused
from stream.service.http.openapi import ANY_EVENT, Operation, Reply, error, parameter
from stream.service.metrics import Metrics
from stream.service.sinks.websocket import WebSocketSink

OPERATION = Operation(
    "WebSocket (upgrade with GET): every event as one JSON text message",
    {101: Reply("switching to the WebSocket protocol; the messages are events", ANY_EVENT),
     400: error("replay is not a whole number"), 401: error("a token is required"),
     403: error("the Host or Origin is not this service's: pages of other sites may not "
                "read the events")},
    query=(parameter("camera", "only these cameras' events (repeat it, or separate with ,)",
                     {"type": "array", "items": {"type": "string"}}) | {"style": "form",
                                                                         "explode": True},
           parameter("replay", "first send up to this many recent events",
                     {"type": "integer", "minimum": 0}),
           parameter("token", "the token, for clients that cannot send a header",
                     {"type": "string"})))


class EventsSocket:
    """The ``/events`` endpoint.

    Query parameters: ``camera`` (repeat it, or separate names with commas) keeps only those
    cameras' events; ``replay=N`` first sends up to N recent events. Each client is a
    :class:`WebSocketSink` with its own bounded queue: a slow one loses its oldest events (and is
    sent ``events.dropped``). Leaving it (or :meth:`close`) lets every client receive what is
    queued for it, then closes the connections.
    """

    def __init__(self, bus: EventBus, settings: ServerSettings, metrics: Metrics,
                 replay_limit: int, *, refusals: Refusals) -> None:
        self._bus = bus
        self._refusals = refusals
        self._settings = settings
        self._metrics = metrics
        self._replay_limit = replay_limit
        self._token = settings.token.get_secret_value() if settings.token else None
        self._clients: set[Subscription] = set()
        self._idle = asyncio.Event()  # no client is connected
        self._idle.set()

    async def handle(self, websocket: WebSocket) -> None:
        """Serve one client until it leaves or the endpoint closes."""
        if not authorized(websocket, self._token):
            self._refusals.note(refused(websocket))
            await websocket.send_denial_response(problem(401, UNAUTHORIZED))
            return
        params = websocket.query_params
        cameras = [name for value in params.getlist("camera") for name in value.split(",")
                   if name]
        replay_text = params.get("replay", "0")
        if not re.fullmatch(r"-?[0-9]{1,9}", replay_text):  # ASCII digits, not "١"
            await websocket.send_denial_response(problem(
                400, "replay must be a whole number of events"))
            return
        replay = min(max(int(replay_text), 0), self._replay_limit)
        async with WebSocketSink(websocket, self._settings) as sink:
            subscription = self._bus.subscribe(sink.queue, cameras=cameras or None,
                                               replay=replay, consumer=sink.consumer)
            self._clients.add(subscription)
            self._idle.clear()
            self._metrics.ws_clients.inc()
            try:
                await sink.run(subscription)
            finally:
                subscription.close()
                self._clients.discard(subscription)
                self._metrics.ws_clients.dec()
                if not self._clients:
                    self._idle.set()

    def queued(self) -> int:
        """Events waiting in all clients' queues."""
        return sum(len(client) for client in self._clients)

    async def close(self, timeout_s: float = 5.0) -> None:
        """Let every client receive what is queued for it (within ``timeout_s``), then close
        the connections."""
        for client in list(self._clients):
            client.close()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
