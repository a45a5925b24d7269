"""The WebSocket sink: one client of ``/events``, sent its subscription's events as JSON text."""

from __future__ import annotations

import asyncio
import contextlib
from types import TracebackType
from typing import Self

from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.config import ServerSettings
from stream.service.bus import Subscription

GONE = (WebSocketDisconnect, RuntimeError, OSError)  # what a vanished client raises


class WebSocketSink:
    """One WebSocket connection: entering accepts it, leaving closes it ("going away").

    Its queue is ``server.client_queue`` events: a slow client loses its oldest ones.
    """

    consumer = "websocket"

    def __init__(self, websocket: WebSocket, settings: ServerSettings) -> None:
        self.queue = settings.client_queue
        self._websocket = websocket
        self._closed = False

    async def __aenter__(self) -> Self:
        await self._websocket.accept()
        return self

    async def __aexit__(self, kind: type[BaseException] | None, error: BaseException | None,
                        traceback: TracebackType | None) -> None:
        if not self._closed:
            self._closed = True
            with contextlib.suppress(*GONE):
                await self._websocket.close(1001, "facestream is shutting down")

    async def run(self, subscription: Subscription) -> None:
        """Send events until the subscription is closed and drained, or the client leaves
        (which closes the subscription)."""
        receiver = asyncio.create_task(self._receive(), name="websocket receiver")
        receiver.add_done_callback(lambda _: subscription.close())
        try:
            while True:
                try:
                    event = await subscription.get()
                except EOFError:  # closed: shutting down (queue drained) or the client left
                    return
                await self._websocket.send_text(subscription.encoded(event).text)
        except GONE:
            return
        finally:
            receiver.cancel()

    async def _receive(self) -> None:
        """Reads (and ignores) what the client sends, to notice when it goes away."""
        try:
            while True:
                message = await self._websocket.receive()
                if message["type"] == "websocket.disconnect":
                    return
        except GONE:
            return
