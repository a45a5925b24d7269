"""The HTTP server of the live service on a real socket, with real WebSocket clients: slow and
dead clients, camera filters, replay, and the shared token."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from stream.config import ServerSettings
from stream.service.app import start_server
from stream.service.bus import EventBus
from stream.service.http import Health, build_app
from stream.service.metrics import Metrics
from stream.types import CameraStatusChanged

TOKEN = "s3cret-token"
# Like a JPEG thumbnail: about 4 KB that per-message compression cannot shrink.
PADDING = base64.b64encode(os.urandom(3000)).decode()
HEALTHY = Health(status="ok", uptime_s=1.0, cameras={}, identities=0, present=0)


def event(camera: str = "c", *, pad: bool = False) -> CameraStatusChanged:
    """A test event; a fresh bus numbers them from 1 (``n`` below is ``seq - 1``)."""
    return CameraStatusChanged(camera=camera, status="streaming",
                               reason=PADDING if pad else None, time=time.time())


def n(message: str | bytes) -> int:
    """The number of the event in a message: its place among those published, from 0."""
    seq: int = json.loads(message)["seq"]
    return seq - 1


@asynccontextmanager
async def running(bus: EventBus, **settings: Any) -> AsyncIterator[int]:
    server_settings = ServerSettings(port=0, **settings)
    app, endpoint = build_app(bus, server_settings, Metrics(), replay_limit=100,
                              health=lambda: HEALTHY)
    server, task, port = await start_server(app, server_settings)
    try:
        yield port
    finally:
        await endpoint.close(timeout_s=1)
        server.should_exit = True
        await task


def run(scenario: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), 60))


def test_a_slow_client_loses_its_oldest_events_and_does_not_delay_a_fast_one() -> None:
    async def scenario() -> None:
        bus = EventBus()
        async with running(bus, client_queue=300) as port:
            url = f"ws://127.0.0.1:{port}/events"
            # The slow client stops reading its socket after one message (max_queue=1), and its
            # small receive buffer makes the server's writes to it back up soon.
            small = socket.socket()
            small.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
            small.connect(("127.0.0.1", port))
            async with connect(url, max_queue=1, sock=small) as slow, connect(url) as fast:
                await asyncio.sleep(0.2)
                total = 3000

                async def read_all() -> list[int]:
                    return [n(await fast.recv()) for _ in range(total)]

                reader = asyncio.create_task(read_all())
                for number in range(total):
                    bus.publish(event(pad=True))
                    if number % 10 == 0:  # a steady stream (1000/s at most), not one burst
                        await asyncio.sleep(0.01)
                # all of them, in order, with no loss notice
                assert await reader == list(range(total))
                # Only now does the slow client read: it was told of its loss, and what it
                # gets after the notice is the newest events.
                messages: list[dict[str, Any]] = []
                while not messages or messages[-1].get("seq") != total:
                    messages.append(json.loads(await asyncio.wait_for(slow.recv(), 5)))
                notices = [m for m in messages if m["type"] == "events.dropped"]
                dropped = sum(m["dropped"] for m in notices)
                assert notices and dropped > 500
                assert len(messages) - len(notices) + dropped == total  # nothing unaccounted
                after = [m["seq"] - 1 for m in messages[messages.index(notices[-1]) + 1:]]
                assert after == list(range(after[0], total))

    run(scenario)


def test_a_client_that_stops_answering_pings_is_disconnected() -> None:
    async def scenario() -> None:
        bus = EventBus()
        async with running(bus, ping_interval_s=0.3, ping_timeout_s=0.3) as port:
            # A raw socket that completes the handshake and then never reads nor answers.
            dead = socket.create_connection(("127.0.0.1", port))
            dead.sendall(b"GET /events HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                         b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                         b"Sec-WebSocket-Version: 13\r\n\r\n")
            deadline = time.monotonic() + 5
            while not bus.subscriptions and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert len(bus.subscriptions) == 1
            while bus.subscriptions and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert not bus.subscriptions, "the dead client is still subscribed"
            dead.close()

    run(scenario)


def test_camera_filter_and_replay() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=10)
        for number in range(6):
            bus.publish(event("door" if number % 2 else "yard"))
        async with running(bus) as port, connect(
                f"ws://127.0.0.1:{port}/events?camera=door&replay=2") as client:
            replayed = [n(await client.recv()) for _ in range(2)]
            assert replayed == [3, 5]
            bus.publish(event("yard"))
            bus.publish(event("door"))
            live = json.loads(await asyncio.wait_for(client.recv(), 5))
            assert live["seq"] - 1 == 7 and live["schema"] == "facestream.event/1"

    run(scenario)


def _get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}),
                                    timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return int(error.code), error.read()


def test_the_token_guards_every_endpoint() -> None:
    async def scenario() -> None:
        bus = EventBus(replay=10)
        bus.publish(event("door"))
        async with running(bus, token=TOKEN) as port:
            base = f"http://127.0.0.1:{port}"
            # Liveness for anyone (container health checks); the details only with the token.
            status, body = await asyncio.to_thread(_get, base + "/healthz")
            assert (status, json.loads(body)) == (200, {"status": "ok"})
            status, body = await asyncio.to_thread(
                _get, base + "/healthz", {"Authorization": f"Bearer {TOKEN}"})
            assert status == 200 and json.loads(body) == HEALTHY.model_dump()
            for path in ("/metrics", "/api/openapi.json"):
                status, body = await asyncio.to_thread(_get, base + path)
                assert status == 401 and b"token" in body and b"facestream_" not in body
                status, _ = await asyncio.to_thread(
                    _get, base + path, {"Authorization": "Bearer wrong"})
                assert status == 401
                status, _ = await asyncio.to_thread(
                    _get, base + path, {"Authorization": f"Bearer {TOKEN}"})
                assert status == 200
            for query in ("", "&token=wrong"):
                with pytest.raises(InvalidStatus) as refused:
                    async with connect(f"ws://127.0.0.1:{port}/events?replay=1{query}"):
                        pass
                assert refused.value.response.status_code == 401
            async with connect(f"ws://127.0.0.1:{port}/events?replay=1",
                               additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ok:
                assert json.loads(await ok.recv())["seq"] == 1
            async with connect(f"ws://127.0.0.1:{port}/events?replay=1&token={TOKEN}") as ok:
                assert json.loads(await ok.recv())["seq"] == 1

    run(scenario)


def test_close_sends_each_client_what_is_queued_then_says_goodbye() -> None:
    async def scenario() -> None:
        bus = EventBus()
        settings = ServerSettings(port=0)
        app, endpoint = build_app(bus, settings, Metrics(), replay_limit=100,
                                  health=lambda: HEALTHY)
        server, task, port = await start_server(app, settings)
        try:
            async with connect(f"ws://127.0.0.1:{port}/events") as client:
                while not bus.subscriptions:
                    await asyncio.sleep(0.01)
                for _ in range(50):
                    bus.publish(event(pad=True))
                assert endpoint.queued() > 0
                await endpoint.close(timeout_s=10)
                assert endpoint.queued() == 0 and not bus.subscriptions
                received = [n(message) async for message in client]  # until the close frame
                assert received == list(range(50))
                assert client.close_code == 1001
        finally:
            server.should_exit = True
            await task

    run(scenario)


def test_metrics_count_events_drops_and_queues_by_consumer() -> None:
    async def scenario() -> None:
        metrics = Metrics()
        bus = EventBus(metrics=metrics)
        metrics.watch_queues(bus.depths)
        lagging = bus.subscribe(2, consumer="mqtt")
        settings = ServerSettings(port=0)
        app, endpoint = build_app(bus, settings, metrics, replay_limit=100,
                                  health=lambda: HEALTHY)
        server, task, port = await start_server(app, settings)
        try:
            for _ in range(5):
                bus.publish(event())
            status, body = await asyncio.to_thread(_get, f"http://127.0.0.1:{port}/metrics")
            text = body.decode()
            assert status == 200
            assert 'facestream_events_total{type="camera.status"} 5.0' in text
            assert 'facestream_events_dropped_total{consumer="mqtt"} 3.0' in text
            assert 'facestream_event_queue_depth{consumer="mqtt"} 2.0' in text
            lagging.close()
        finally:
            await endpoint.close(timeout_s=1)
            server.should_exit = True
            await task

    run(scenario)


def test_the_openapi_document_is_valid_and_made_from_the_types() -> None:
    validator = pytest.importorskip("openapi_spec_validator")

    async def scenario() -> None:
        async with running(EventBus()) as port:
            status, body = await asyncio.to_thread(
                _get, f"http://127.0.0.1:{port}/api/openapi.json")
        assert status == 200
        document = json.loads(body)
        validator.validate(document)
        assert set(document["paths"]) == {"/events", "/healthz", "/metrics",
                                          "/api/openapi.json"}
        schemas = document["components"]["schemas"]
        # Events come from the dataclasses: the new fields of person.left are there.
        left = schemas["PersonLeft"]
        assert {"start_frame_time", "end_frame_time", "thumbnail", "quality"} <= set(
            left["required"])
        assert left["properties"]["type"] == {"const": "person.left"}
        assert {"$ref": "#/components/schemas/PersonLeft"} in schemas["Event"]["oneOf"]
        assert set(schemas["Health"]["properties"]) == set(Health.model_fields)

    run(scenario)
