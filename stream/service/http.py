"""The HTTP side of the live service (Starlette on uvicorn): ``/events`` (WebSocket),
``/healthz``, ``/metrics`` and the gallery's REST API under ``/api`` (described by
``/api/openapi.json``), behind an optional shared token."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import json
import logging
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from PIL import Image, ImageDraw
from starlette.applications import Starlette
from starlette.requests import HTTPConnection, Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket, WebSocketDisconnect

from stream.config import ServerSettings, redact_url
from stream.pipeline.appearances import Event
from stream.identity import operations
from stream.identity.gallery import Gallery
from stream.identity.store import GalleryError
from stream.imaging import jpeg_bytes
from stream.service.bus import EventBus, Subscription
from stream.pipeline.live import Engine, Preview
from stream.service.metrics import Metrics

log = logging.getLogger(__name__)
DASHBOARD = Path(__file__).parents[1] / "dashboard"
PREVIEW_WIDTH = 640  # dashboard previews are scaled down to this width
TEXT_CACHE = 1024  # events whose JSON is kept for the clients still to be sent them
UNAUTHORIZED = "a valid token is required: send 'Authorization: Bearer TOKEN' or ?token=TOKEN"
CALL_TIMEOUT_S = 30.0  # an operation the model thread has not run by then is given up
T = TypeVar("T")
Handler = Callable[[Request], Awaitable[Response]]


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
        self._texts: dict[int, str] = {}  # seq -> JSON, most recent events

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
        receiver.add_done_callback(lambda _: subscription.close())  # the client left
        try:
            await self._send(websocket, subscription)
        finally:
            receiver.cancel()
            subscription.close()
            self._clients.discard(subscription)
            self._metrics.ws_clients.dec()

    async def _send(self, websocket: WebSocket, subscription: Subscription) -> None:
        try:
            while True:
                try:
                    event = await subscription.get()
                except EOFError:  # closed: shutting down (queue drained) or the client left
                    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
                        await websocket.close(1001, "facestream is shutting down")
                    return
                if event["type"] == "events.dropped":
                    self._metrics.ws_dropped.inc(event["dropped"])
                await websocket.send_text(self._text(event))
        except (WebSocketDisconnect, RuntimeError, OSError):
            return

    def _text(self, event: Event) -> str:
        """The JSON of ``event``, encoded once for all clients."""
        seq = event.get("seq")
        if seq is None:
            return json.dumps(event)
        text = self._texts.get(seq)
        if text is None:
            text = self._texts[seq] = json.dumps(event)
            if len(self._texts) > TEXT_CACHE:
                del self._texts[next(iter(self._texts))]
        return text

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


class ApiError(Exception):
    """A request the API refuses: the HTTP status, and the message sent as ``{"error": ...}``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = json.loads(await request.body())
    except ValueError:
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    return body


def _integers(body: dict[str, Any], key: str) -> list[int]:
    values = body.get(key, [])
    if not isinstance(values, list) or not all(
            isinstance(value, int) and not isinstance(value, bool) for value in values):
        raise ApiError(400, f"{key} must be a list of whole numbers")
    return values


def _path_identity(request: Request) -> int:
    try:
        return Gallery.number(request.path_params["id"])
    except GalleryError as error:
        raise ApiError(404, str(error)) from None


def _require(gallery: Gallery, identity: int) -> None:
    if identity not in gallery:
        raise ApiError(404, f"there is no person {Gallery.label(identity)}")


class PersonsApi:
    """``/api/persons``: the gallery operations of :mod:`stream.identity.operations`, each run in
    the model thread through :meth:`Engine.call`; each change is published on the bus as its
    event, and is the response."""

    def __init__(self, engine: Engine, bus: EventBus, metrics: Metrics) -> None:
        self._engine = engine
        self._bus = bus
        self._metrics = metrics

    def routes(self, guard: Callable[[Handler], Handler]) -> list[Route]:
        """The routes, each behind ``guard``."""
        person = "/api/persons/{id}"
        return [
            Route("/api/persons", guard(self.list_people), methods=["GET"]),
            Route("/api/persons", guard(self.enroll), methods=["POST"]),
            Route(person, guard(self.show), methods=["GET"]),
            Route(person, guard(self.rename), methods=["PATCH"]),
            Route(person, guard(self.delete), methods=["DELETE"]),
            Route(f"{person}/thumbnail.jpg", guard(self.thumbnail), methods=["GET"]),
            Route(f"{person}/merge", guard(self.merge), methods=["POST"]),
            Route(f"{person}/split", guard(self.split), methods=["POST"]),
            Route(f"{person}/forget", guard(self.forget), methods=["POST"]),
            Route(f"{person}/reject", guard(self.reject), methods=["POST"]),
            Route("/api/cameras", guard(self.cameras), methods=["GET"]),
            Route("/api/cameras/{name}/preview.jpg", guard(self.preview), methods=["GET"]),
        ]

    async def cameras(self, _: Request) -> Response:
        """``GET /api/cameras``: each camera's state and rates."""
        return JSONResponse([{
            "name": view.camera.name, "url": redact_url(view.camera.config.url),
            "status": view.camera.stats.state, "reason": view.camera.stats.reason,
            "analyzed_fps": round(view.analyzed_fps, 2),
            "frames_analyzed": view.frames_analyzed,
            "frames_dropped": view.camera.stats.frames_dropped,
        } for view in self._engine.cameras()])

    async def preview(self, request: Request) -> Response:
        """``GET /api/cameras/{name}/preview.jpg``: the latest analysed frame with its faces."""
        name = request.path_params["name"]
        views = [view for view in self._engine.cameras() if view.camera.name == name]
        if not views:
            raise ApiError(404, f"there is no camera {name!r}")
        if views[0].preview is None:
            raise ApiError(404, f"camera {name!r} has no analysed frame yet")
        jpeg = await asyncio.to_thread(render_preview, views[0].preview)
        return Response(jpeg, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _call(self, operation: Callable[[Gallery], T]) -> T:
        # The event loop never touches the gallery: the model thread owns it.
        if not self._engine.is_alive():
            raise ApiError(503, "the model thread is not running")
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._engine.call(operation)),
                                          CALL_TIMEOUT_S)
        except TimeoutError:  # waiting, the operation is cancelled; running, it completes
            raise ApiError(503, "the model thread did not answer in time") from None

    async def _on(self, identity: int, operation: Callable[[Gallery], T]) -> T:
        """``operation`` in the model thread, when ``identity`` is in the gallery (else 404)."""
        def checked(gallery: Gallery) -> T:
            _require(gallery, identity)
            return operation(gallery)
        return await self._call(checked)

    async def _change(self, identity: int, operation: Callable[[Gallery], Event]) -> Response:
        """Run a change of ``identity`` and publish its event, which is also the response."""
        event = await self._on(identity, operation)
        # After a change the engine reconciles its tracks and emits what that ends (person.left
        # of a merged or deleted person). Waiting for the thread once more publishes those
        # first, so that clients never see an ID after the identity.* event that removed it.
        with contextlib.suppress(ApiError):  # the change is made: announce it regardless
            await self._call(lambda _: None)
        stamped = self._bus.publish(event)
        return JSONResponse(stamped)

    async def list_people(self, _: Request) -> Response:
        """``GET /api/persons``."""
        return JSONResponse(await self._call(operations.list_people))

    async def enroll(self, request: Request) -> Response:
        """``POST /api/persons`` with ``{"name": "Ada", "photos": [base64 JPEG/PNG, ...],
        "force": false}``: a known person from photos, each with exactly one good face."""
        body = await _body(request)
        photos, name, force = body.get("photos"), body.get("name"), body.get("force", False)
        if (not isinstance(photos, list) or not photos
                or not all(isinstance(photo, str) for photo in photos)
                or not (name is None or isinstance(name, str)) or not isinstance(force, bool)):
            raise ApiError(400, 'give {"name": "Ada", "photos": ["<base64 image>", ...]}')
        try:
            images = [base64.b64decode(photo, validate=True) for photo in photos]
        except ValueError:
            raise ApiError(400, "each photo must be a base64-encoded image") from None
        with tempfile.TemporaryDirectory(prefix="facestream-enroll-") as directory:
            paths = [Path(directory) / f"photo{number}" for number in range(1, len(images) + 1)]
            for path, image in zip(paths, images, strict=True):
                path.write_bytes(image)
            worker = self._engine.worker
            event = await self._call(lambda g: operations.enroll(g, worker, paths, name,
                                                                 force=force))
        stamped = self._bus.publish(event)
        return JSONResponse(stamped, 201)

    async def show(self, request: Request) -> Response:
        """``GET /api/persons/{id}``."""
        identity = _path_identity(request)
        return JSONResponse(await self._on(identity,
                                           lambda g: operations.show_person(g, identity)))

    async def thumbnail(self, request: Request) -> Response:
        """``GET /api/persons/{id}/thumbnail.jpg``."""
        identity = _path_identity(request)
        jpeg = await self._on(identity, lambda g: operations.thumbnail(g, identity))
        if jpeg is None:
            raise ApiError(404, f"no face of {Gallery.label(identity)} was kept")
        return Response(jpeg, media_type="image/jpeg")

    async def rename(self, request: Request) -> Response:
        """``PATCH /api/persons/{id}`` with ``{"name": "Ada"}`` (null clears the name)."""
        identity = _path_identity(request)
        body = await _body(request)
        name = body.get("name")
        if "name" not in body or not (name is None or isinstance(name, str)):
            raise ApiError(400, 'give {"name": "..."}, or {"name": null} to clear the name')
        return await self._change(identity, lambda g: operations.rename(g, identity, name))

    async def merge(self, request: Request) -> Response:
        """``POST /api/persons/{id}/merge`` with ``{"other": "p4"}``: p4 becomes {id}."""
        keep = _path_identity(request)
        other = (await _body(request)).get("other")
        if not isinstance(other, str):
            raise ApiError(400, 'give {"other": "p4"}: the person merged into this one')
        try:
            gone = Gallery.number(other)
        except GalleryError as error:
            raise ApiError(400, str(error)) from None
        if gone == keep:
            raise ApiError(409, f"cannot merge {Gallery.label(keep)} with itself")

        def merge(gallery: Gallery) -> Event:
            _require(gallery, gone)
            return operations.merge(gallery, keep, gone)
        return await self._change(keep, merge)

    async def split(self, request: Request) -> Response:
        """``POST /api/persons/{id}/split`` with ``{"exemplars": [..], "appearances": [..]}``:
        those move to a new person."""
        identity = _path_identity(request)
        body = await _body(request)
        exemplars, appearances = _integers(body, "exemplars"), _integers(body, "appearances")
        return await self._change(identity, lambda g: operations.split(
            g, identity, exemplars=exemplars, appearances=appearances))

    async def delete(self, request: Request) -> Response:
        """``DELETE /api/persons/{id}``."""
        identity = _path_identity(request)
        return await self._change(identity, lambda g: operations.delete(g, identity))

    async def forget(self, request: Request) -> Response:
        """``POST /api/persons/{id}/forget``: deleted, and erased from the file."""
        identity = _path_identity(request)
        return await self._change(identity, lambda g: operations.forget(g, identity))

    async def reject(self, request: Request) -> Response:
        """``POST /api/persons/{id}/reject`` with ``{"camera": "door"}``: "not this person" for
        the track on that camera now assigned {id}."""
        identity = _path_identity(request)
        camera = (await _body(request)).get("camera")
        if not isinstance(camera, str) or not camera:
            raise ApiError(400, 'give {"camera": "name"}: the camera the person is on')
        person = Gallery.label(identity)

        def reject(_: Gallery) -> Event:
            try:
                tracks = self._engine.reject(identity, camera)
            except GalleryError as error:  # the person exists: the camera does not
                raise ApiError(404, str(error)) from None
            if not tracks:
                raise ApiError(409, f"no track on camera {camera!r} is {person} now")
            return {"type": "identity.rejected", "person": person, "camera": camera,
                    "tracks": tracks}
        return await self._change(identity, reject)


def openapi_document(*, api: bool) -> dict[str, Any]:
    """The OpenAPI 3.1 description of every route of the app; the ``/api/persons`` routes only
    when ``api`` (the app has them when it is given the engine)."""
    def ref(name: str) -> dict[str, Any]:
        return {"$ref": f"#/components/schemas/{name}"}

    def reply(description: str, schema: dict[str, Any] | None = None,
              media: str = "application/json") -> dict[str, Any]:
        content = {"content": {media: {"schema": schema}}} if schema is not None else {}
        return {"description": description, **content}

    def error(description: str) -> dict[str, Any]:
        return reply(description, ref("Error"))

    def event(kind: str, required: list[str], **fields: dict[str, Any]) -> dict[str, Any]:
        return {"allOf": [ref("Event"), {
            "type": "object", "required": ["type", *required],
            "properties": {"type": {"const": kind}, **fields}}]}

    def operation(summary: str, responses: dict[str, Any], body: str | None = None,
                  person: bool = True) -> dict[str, Any]:
        document: dict[str, Any] = {"summary": summary}
        if person:
            document["parameters"] = [{"name": "id", "in": "path", "required": True,
                                       "description": "a person ID, such as p12",
                                       "schema": ref("PersonId")}]
        if body is not None:
            document["requestBody"] = {"required": True, "content": {
                "application/json": {"schema": ref(body)}}}
        document["responses"] = {
            **responses, "401": error("a token is required (the service was started with one)"),
            **({"404": error("no such person (or camera, to reject)")} if person else {}),
            "503": error("the model thread is not running or did not answer")}
        return document

    def change(summary: str, result: str, body: str | None = None,
               conflict: str | None = None) -> dict[str, Any]:
        responses = {"200": reply("done; the event announcing it (also published on /events "
                                  "and MQTT)", ref(result))}
        if body is not None:
            responses["400"] = error("the body is not what the operation takes")
        if conflict is not None:
            responses["409"] = error(conflict)
        return operation(summary, responses, body)

    person_id = ref("PersonId")
    text = reply("text", {"type": "string"}, "text/plain")
    unauthorized = {"401": error("a token is required (the service was started with one)")}
    paths: dict[str, Any] = {
        "/events": {"get": {
            "summary": "WebSocket (upgrade with GET): every event as one JSON text message",
            "parameters": [
                {"name": "camera", "in": "query", "style": "form", "explode": True,
                 "description": "only these cameras' events (repeat it, or separate with ,)",
                 "schema": {"type": "array", "items": {"type": "string"}}},
                {"name": "replay", "in": "query", "schema": {"type": "integer", "minimum": 0},
                 "description": "first send up to this many recent events"},
                {"name": "token", "in": "query", "schema": {"type": "string"},
                 "description": "the token, for clients that cannot send a header"}],
            "responses": {"101": reply("switching to the WebSocket protocol; the messages "
                                       "are events", ref("Event")),
                          "400": {**text, "description": "replay is not a whole number"},
                          "401": {**text, "description": "a token is required"}}}},
        "/healthz": {"get": {"summary": "Health of the service", "responses": {
            "200": reply("healthy", ref("Health")),
            "503": reply("the model thread failed", ref("Health")), **unauthorized}}},
        "/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": reply("the metrics in the Prometheus text format", {"type": "string"},
                         "text/plain"), **unauthorized}}},
        "/api/openapi.json": {"get": {"summary": "This description", "responses": {
            "200": reply("an OpenAPI 3.1 document", {"type": "object"}), **unauthorized}}},
    }
    if api:
        paths |= {
            "/api/persons": {
                "get": operation("Everyone in the gallery, in order of creation", {
                    "200": reply("the people", {"type": "array",
                                                "items": ref("PersonSummary")})},
                    person=False),
                "post": operation(
                    "Enroll a known person from photos, each with exactly one good face",
                    {"201": reply("the new person; the event is also published",
                                  ref("CreatedEvent")),
                     "400": error("a photo without one good face, not an image, or a face "
                                  "the gallery knows already (unless force)")},
                    "Enroll", person=False)},
            "/api/persons/{id}": {
                "get": operation("One person, with their exemplars and appearances",
                                 {"200": reply("the person", ref("Person"))}),
                "patch": change("Rename the person (a null name clears it)", "RenamedEvent",
                                "Rename"),
                "delete": change("Remove the person (seen again, they get a new ID)",
                                 "DeletedEvent")},
            "/api/persons/{id}/thumbnail.jpg": {"get": operation(
                "The person's best face", {"200": reply("a JPEG", {
                    "type": "string", "contentMediaType": "image/jpeg"}, "image/jpeg")})},
            "/api/persons/{id}/merge": {"post": change(
                "Merge another person into this one", "MergedEvent", "Merge",
                conflict="the other person is this one")},
            "/api/persons/{id}/split": {"post": change(
                "Move exemplars and appearances of the person to a new person", "SplitEvent",
                "Split")},
            "/api/persons/{id}/forget": {"post": change(
                "Erase the person completely, also from the file's free pages", "DeletedEvent")},
            "/api/cameras": {"get": operation("Every camera: status, analysis rate, drops", {
                "200": reply("the cameras", {"type": "array", "items": ref("Camera")})},
                person=False)},
            "/api/cameras/{name}/preview.jpg": {"get": {
                "summary": "The camera's latest analysed frame with its faces' boxes and IDs",
                "parameters": [{"name": "name", "in": "path", "required": True,
                                "schema": {"type": "string"}}],
                "responses": {
                    "200": reply("a JPEG, at most 640 px wide", {
                        "type": "string", "contentMediaType": "image/jpeg"}, "image/jpeg"),
                    "404": error("no such camera, or no frame analysed yet"),
                    **unauthorized}}},
            "/api/persons/{id}/reject": {"post": change(
                "Not this person: the track on the camera now assigned this person is someone "
                "else; it is decided again and faces like it are never this person",
                "RejectedEvent", "Reject", conflict="no track on the camera is this person now")},
        }
    timestamp = {"type": "string", "format": "date-time"}
    identity_events = {
        "RenamedEvent": event("identity.renamed", ["person", "name"], person=person_id,
                              name={"type": ["string", "null"]}),
        "MergedEvent": event("identity.merged", ["person", "merged"], person=person_id,
                             merged=person_id),
        "SplitEvent": event("identity.split", ["person", "new_person", "exemplars",
                                               "appearances"],
                            person=person_id, new_person=person_id,
                            exemplars={"type": "array", "items": {"type": "integer"}},
                            appearances={"type": "array", "items": {"type": "integer"}}),
        "DeletedEvent": event("identity.deleted", ["person", "forgotten"], person=person_id,
                              forgotten={"type": "boolean"}),
        "CreatedEvent": event("identity.created", ["person", "name", "exemplars"],
                              person=person_id, name={"type": ["string", "null"]},
                              exemplars={"type": "integer", "minimum": 1}),
        "RejectedEvent": event("identity.rejected", ["person", "camera", "tracks"],
                               person=person_id, camera={"type": "string"},
                               tracks={"type": "integer", "minimum": 1}),
    }
    schemas: dict[str, Any] = {
        "Error": {"type": "object", "required": ["error"],
                  "properties": {"error": {"type": "string"}}},
        "Event": {"type": "object", "required": ["schema", "seq", "type", "time"],
                  "additionalProperties": True, "properties": {
                      "schema": {"const": "facestream.event/1"}, "seq": {"type": "integer"},
                      "type": {"type": "string"}, "time": timestamp,
                      "camera": {"type": "string"}, "person": person_id}},
        "Health": {"type": "object", "required": ["status"], "properties": {
            "status": {"enum": ["ok", "failing"]}, "uptime_s": {"type": "number"},
            "cameras": {"type": "object", "additionalProperties": {"type": "string"}},
            "identities": {"type": "integer"}, "present": {"type": "integer"}}},
        "PersonId": {"type": "string", "pattern": "^[pP]?[0-9]+$"},
    }
    if api:
        summary_fields = {
            "id": person_id, "name": {"type": ["string", "null"]}, "created": timestamp,
            "last_seen": timestamp, "exemplars": {"type": "integer"},
            "appearances": {"type": "integer"}, "seen_s": {"type": "number"}}
        schemas |= identity_events | {
            "PersonSummary": {"type": "object", "required": list(summary_fields),
                              "properties": summary_fields},
            "Person": {"allOf": [ref("PersonSummary"), {
                "type": "object", "required": ["exemplar_list", "appearance_list"],
                "properties": {
                    "exemplar_list": {"type": "array", "items": {"type": "object", "properties": {
                        "id": {"type": "integer"}, "quality": {"type": "number"},
                        "source": {"type": "string"}, "created": timestamp,
                        "face": {"type": ["string", "null"], "contentEncoding": "base64",
                                 "contentMediaType": "image/jpeg"}}}},
                    "appearance_list": {"type": "array", "items": {
                        "type": "object", "properties": {
                            "id": {"type": "integer"}, "source": {"type": "string"},
                            "start": {"type": "number", "description": "Unix time"},
                            "end": {"type": "number", "description": "Unix time"}}}}}}]},
            "Rename": {"type": "object", "required": ["name"], "properties": {
                "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 200}}},
            "Merge": {"type": "object", "required": ["other"], "properties": {
                "other": {**person_id, "description": "the person merged into this one"}}},
            "Split": {"type": "object", "properties": {
                "exemplars": {"type": "array", "items": {"type": "integer"}},
                "appearances": {"type": "array", "items": {"type": "integer"}}}},
            "Camera": {"type": "object", "properties": {
                "name": {"type": "string"}, "url": {"type": "string"},
                "status": {"enum": ["connecting", "streaming", "reconnecting", "failed",
                                    "stopped"]},
                "reason": {"type": ["string", "null"]}, "analyzed_fps": {"type": "number"},
                "frames_analyzed": {"type": "integer"}, "frames_dropped": {"type": "integer"}}},
            "Enroll": {"type": "object", "required": ["photos"], "properties": {
                "name": {"type": ["string", "null"], "minLength": 1, "maxLength": 200},
                "photos": {"type": "array", "minItems": 1, "maxItems": 24, "items": {
                    "type": "string", "contentEncoding": "base64"}},
                "force": {"type": "boolean", "description": "enroll even when the gallery "
                          "knows the face"}}},
            "Reject": {"type": "object", "required": ["camera"], "properties": {
                "camera": {"type": "string", "minLength": 1}}},
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": "facestream", "version": "1",
                 "description": "The live service: events, health, metrics and the gallery. "
                                "With a token (--token), every route requires it."},
        "paths": paths,
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer"},
            "query": {"type": "apiKey", "in": "query", "name": "token"}}},
        "security": [{}, {"bearer": []}, {"query": []}],
    }


def render_preview(preview: Preview, width: int = PREVIEW_WIDTH) -> bytes:
    """The frame scaled to ``width`` with each face's box and ID drawn, as JPEG."""
    image = Image.fromarray(preview.image)
    scale = min(1.0, width / image.width)
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    for box, person in preview.faces:
        x1, y1, x2, y2 = (v * scale for v in box)
        colour = (46, 204, 113) if person else (241, 196, 15)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        label = person or "?"
        draw.rectangle((x1, max(0.0, y1 - 14), x1 + 8 * len(label) + 6, y1), fill=colour)
        draw.text((x1 + 3, max(0.0, y1 - 13)), label, fill=(0, 0, 0))
    return jpeg_bytes(np.asarray(image, np.uint8), quality=80)


def build_app(bus: EventBus, settings: ServerSettings, metrics: Metrics, *,
              replay_limit: int, health: Callable[[], dict[str, Any]],
              engine: Engine | None = None) -> tuple[Starlette, EventsEndpoint]:
    """The ASGI app and its events endpoint (for an orderly shutdown). With ``engine``, the
    gallery's REST API (``/api/persons``) is served too."""
    token = settings.token.get_secret_value() if settings.token else None
    events = EventsEndpoint(bus, settings, metrics, replay_limit)

    def guard(handler: Handler) -> Handler:
        async def guarded(request: Request) -> Response:
            if not _authorized(request, token):
                return JSONResponse({"error": UNAUTHORIZED}, 401,
                                    headers={"WWW-Authenticate": "Bearer"})
            try:
                return await handler(request)
            except ApiError as error:
                return JSONResponse({"error": str(error)}, error.status)
            except GalleryError as error:  # the operation refused what the request asked
                return JSONResponse({"error": str(error)}, 400)
        return guarded

    async def healthz(_: Request) -> Response:
        document = health()
        return JSONResponse(document, 200 if document["status"] == "ok" else 503)

    async def metrics_text(_: Request) -> Response:
        depths = {"websocket": 0, "mqtt": 0}
        for subscription in bus.subscriptions:
            depths[subscription.consumer] = depths.get(subscription.consumer, 0) + len(
                subscription)
        for consumer, depth in depths.items():
            metrics.queue_depth.labels(consumer).set(depth)
        return Response(metrics.exposition(), media_type="text/plain; version=0.0.4")

    description = openapi_document(api=engine is not None)

    async def openapi(_: Request) -> Response:
        return JSONResponse(description)

    routes: list[BaseRoute] = [
        WebSocketRoute("/events", events.handle),
        Route("/healthz", guard(healthz)),
        Route("/metrics", guard(metrics_text)),
        Route("/api/openapi.json", guard(openapi)),
    ]
    if engine is not None:
        routes += PersonsApi(engine, bus, metrics).routes(guard)
    # The dashboard's files hold no data: they are served without the token, and ask for it.
    routes.append(Mount("/", app=StaticFiles(directory=DASHBOARD, html=True, check_dir=False),
                        name="dashboard"))
    return Starlette(routes=routes), events
