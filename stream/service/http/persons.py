"""``/api/persons``: the gallery operations of :mod:`stream.gallery_admin`, each run in the model
thread through :meth:`Engine.call`; each change is published on the bus as its event, which is
also the response. Request bodies are the pydantic models here (the OpenAPI document shows
their schemas); so are the person documents the responses hold."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import re
import time
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stream import gallery_admin
from stream.errors import ConflictError, GalleryError
from stream.identity.gallery import Gallery
from stream.service.bus import EventBus
from stream.service.http.auth import ApiError
from stream.service.http.openapi import Api, Operation, Reply, error, jpeg
from stream.types import (
    Event,
    IdentityCreated,
    IdentityDeleted,
    IdentityMerged,
    IdentityRejected,
    IdentityRenamed,
    IdentitySplit,
)

if TYPE_CHECKING:
    from stream.pipeline.live import Engine  # the models' thread: torch

PERSON_ID = re.compile(r"[pP]?([0-9]+)")
CALL_TIMEOUT_S = 30.0  # an operation the model thread has not run by then is given up
T = TypeVar("T")
Body = TypeVar("Body", bound="JsonBody")


class JsonBody(BaseModel):
    """A request body; ``usage`` is the refusal sent for one that does not fit."""

    model_config = ConfigDict(strict=True)
    usage: ClassVar[str]


class Rename(JsonBody):
    """A new name (null clears it)."""

    usage = 'give {"name": "..."}, or {"name": null} to clear the name'
    name: str | None = Field(description="1 to 200 characters")


class Merge(JsonBody):
    usage = ('give {"other": "p4"}: the person merged into this one, and "force": true to '
             'merge two people seen on screen together')
    other: str = Field(description="the person merged into this one, such as p4")
    force: bool = Field(False, description="merge even if the two were on screen together "
                        "(one was a picture or reflection of the other)")


class Split(JsonBody):
    """What moves to the new person."""

    usage = 'give {"exemplars": [...], "appearances": [...]}: lists of whole numbers'
    exemplars: list[int] = Field(default_factory=list, description="exemplar IDs")
    appearances: list[int] = Field(default_factory=list, description="appearance IDs")


class Enroll(JsonBody):
    usage = 'give {"name": "Ada", "photos": ["<base64 image>", ...]}'
    name: str | None = Field(None, description="1 to 200 characters")
    photos: list[str] = Field(min_length=1, description="JPEG or PNG photos, base64, each with "
                              "exactly one good face")
    force: bool = Field(False, description="enroll even when the gallery knows the face")


class Reject(JsonBody):
    usage = 'give {"camera": "name"}: the camera the person is on'
    camera: str = Field(min_length=1, description="the camera whose track is someone else")


class PersonSummary(BaseModel):
    """One person, as lists show them."""

    id: str
    name: str | None
    created: datetime
    last_seen: datetime
    exemplars: int
    appearances: int
    seen_s: float


class Exemplar(BaseModel):
    id: int
    quality: float
    source: str
    created: datetime
    face: str | None = Field(description="JPEG, base64")


class AppearanceRecord(BaseModel):
    id: int
    source: str
    start: float = Field(description="Unix time")
    end: float = Field(description="Unix time")


class Person(PersonSummary):
    """One person with their exemplars and appearances."""

    exemplar_list: list[Exemplar]
    appearance_list: list[AppearanceRecord]


async def read_json_body(request: Request, model: type[Body]) -> Body:
    """The request's JSON object validated as ``model``; a 400 with ``model.usage`` otherwise."""
    try:
        body = json.loads(await request.body())
    except (ValueError, RecursionError):  # RecursionError: nested too deep
        raise ApiError(400, "the body must be a JSON object") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the body must be a JSON object")
    try:
        json.dumps(body, ensure_ascii=False).encode()
    except (ValueError, RecursionError):  # ValueError: a lone surrogate, such as "\ud800"
        raise ApiError(400, "the body's text must be valid Unicode (it holds a lone "
                       "surrogate)") from None
    try:
        return model.model_validate(body)
    except ValidationError:
        raise ApiError(400, model.usage) from None


def _number(label: str, status: int) -> int:
    """The identity number of a person ID (``p12`` or ``12``, ASCII digits only: ``p١`` is not
    ``p1``); ``status`` when ``label`` is not an ID, 404 when it is one no gallery holds."""
    match = PERSON_ID.fullmatch(label)
    shown = repr(label if len(label) <= 40 else label[:40] + "...")
    if match is None:
        raise ApiError(status, f"{shown} is not a person ID; IDs look like p12")
    if len(match[1]) > 18:  # beyond SQLite's 64-bit integers (and Python's int() limit)
        raise ApiError(404, f"there is no person {shown}")
    return int(match[1])


async def on_model_thread(engine: Engine, operation: Callable[[Gallery], T]) -> T:
    """``operation`` run on the gallery in the model thread (503 when it does not run it)."""
    # The event loop never touches the gallery: the model thread owns it.
    if not engine.is_alive():
        raise ApiError(503, "the model thread is not running")
    try:
        return await asyncio.wait_for(asyncio.wrap_future(engine.call(operation)),
                                      CALL_TIMEOUT_S)
    except TimeoutError:  # waiting, the operation is cancelled; running, it completes
        raise ApiError(503, "the model thread did not answer in time") from None


def _path_identity(request: Request) -> int:
    return _number(request.path_params["id"], 404)


def _require(gallery: Gallery, identity: int) -> None:
    if identity not in gallery:
        raise ApiError(404, f"there is no person {Gallery.label(identity)}")


def _operation(summary: str, ok: Reply, body: type[JsonBody] | None = None, *,
               person: bool = True, conflict: str | None = None, status: int = 200) -> Operation:
    replies = {status: ok, 503: error("the model thread is not running or did not answer")}
    if body is not None:
        replies[400] = error("the body is not what the operation takes")
    if person:
        replies[404] = error("no such person (or camera, to reject)")
    if conflict is not None:
        replies[409] = error(conflict)
    return Operation(summary, replies, body)


def _change(summary: str, event: type[Event], body: type[JsonBody] | None = None,
            conflict: str | None = None) -> Operation:
    return _operation(summary, Reply("done; the event announcing it (also published on /events "
                                     "and MQTT)", event), body, conflict=conflict)


class PersonsApi:
    """The gallery's routes; ``engine`` runs the operations, ``bus`` announces the changes."""

    def __init__(self, engine: Engine, bus: EventBus) -> None:
        self._engine = engine
        self._bus = bus

    def add_to(self, api: Api) -> None:
        """Add the routes to ``api``."""
        person = "/api/persons/{id}"
        api.add("GET", "/api/persons", self.list_people, _operation(
            "Everyone in the gallery, in order of creation",
            Reply("the people", PersonSummary, many=True), person=False))
        api.add("POST", "/api/persons", self.enroll, _operation(
            "Enroll a known person from photos, each with exactly one good face",
            Reply("the new person; the event is also published", IdentityCreated), Enroll,
            person=False, status=201))
        api.add("GET", person, self.show, _operation(
            "One person, with their exemplars and appearances", Reply("the person", Person)))
        api.add("PATCH", person, self.rename, _change(
            "Rename the person (a null name clears it). When others have the name too, the "
            "answer also has a `warning` naming them (the rename is made: two people may "
            "share a name)", IdentityRenamed, Rename))
        api.add("DELETE", person, self.delete, _change(
            "Remove the person (seen again, they get a new ID)", IdentityDeleted))
        api.add("GET", f"{person}/thumbnail.jpg", self.thumbnail, _operation(
            "The person's best face", jpeg("a JPEG")))
        api.add("POST", f"{person}/merge", self.merge, _change(
            "Merge another person into this one", IdentityMerged, Merge,
            conflict="the other person is this one, or was on screen together with this one "
            "(give force)"))
        api.add("POST", f"{person}/split", self.split, _change(
            "Move exemplars and appearances of the person to a new person", IdentitySplit,
            Split))
        api.add("POST", f"{person}/forget", self.forget, _change(
            "Erase the person completely, also from the file's free pages", IdentityDeleted))
        api.add("POST", f"{person}/reject", self.reject, _change(
            "Not this person: the track on the camera now assigned this person is someone "
            "else; it is decided again and faces like it are never this person",
            IdentityRejected, Reject, conflict="no track on the camera is this person now"))

    async def _call(self, operation: Callable[[Gallery], T]) -> T:
        return await on_model_thread(self._engine, operation)

    async def _on(self, identity: int, operation: Callable[[Gallery], T]) -> T:
        """``operation`` in the model thread, when ``identity`` is in the gallery (else 404)."""
        def checked(gallery: Gallery) -> T:
            _require(gallery, identity)
            return operation(gallery)
        return await self._call(checked)

    def _announce(self, event: Event, status: int = 200) -> Response:
        """Publish ``event``; the response is the event as published (the same JSON text)."""
        stamped = self._bus.publish(event)
        return Response(self._bus.encoded(stamped).text, status,
                        media_type="application/json")

    async def _change(self, identity: int, operation: Callable[[Gallery], Event]) -> Response:
        """Run a change of ``identity`` and publish its event, which is also the response."""
        event = await self._on(identity, operation)
        # After a change the engine reconciles its tracks and emits what that ends (person.left
        # of a merged or deleted person). Waiting for the thread once more publishes those
        # first, so that clients never see an ID after the identity.* event that removed it.
        with contextlib.suppress(ApiError):  # the change is made: announce it regardless
            await self._call(lambda _: None)
        return self._announce(event)

    async def list_people(self, _: Request) -> Response:
        """``GET /api/persons``."""
        return JSONResponse(await self._call(gallery_admin.list_people))

    async def enroll(self, request: Request) -> Response:
        """``POST /api/persons`` with ``{"name": "Ada", "photos": [base64 JPEG/PNG, ...],
        "force": false}``: a known person from photos, each with exactly one good face."""
        body = await read_json_body(request, Enroll)
        try:
            images = [base64.b64decode(photo, validate=True) for photo in body.photos]
        except ValueError:
            raise ApiError(400, "each photo must be a base64-encoded image") from None
        # Decoded here, in memory (never on disk) and off the model thread.
        photos = await asyncio.to_thread(gallery_admin.read_photos, images)
        worker = self._engine.worker
        event = await self._call(lambda g: gallery_admin.enroll(
            g, worker, photos, body.name, force=body.force, api=True))
        return self._announce(event, 201)

    async def show(self, request: Request) -> Response:
        """``GET /api/persons/{id}``."""
        identity = _path_identity(request)
        return JSONResponse(await self._on(identity,
                                           lambda g: gallery_admin.show_person(g, identity)))

    async def thumbnail(self, request: Request) -> Response:
        """``GET /api/persons/{id}/thumbnail.jpg``."""
        identity = _path_identity(request)
        face = await self._on(identity, lambda g: gallery_admin.thumbnail(g, identity))
        if face is None:
            raise ApiError(404, f"no face of {Gallery.label(identity)} was kept")
        return Response(face, media_type="image/jpeg")

    async def rename(self, request: Request) -> Response:
        """``PATCH /api/persons/{id}`` with ``{"name": "Ada"}`` (null clears the name)."""
        identity = _path_identity(request)
        name = (await read_json_body(request, Rename)).name
        warnings: list[str | None] = []

        def rename(gallery: Gallery) -> Event:
            event = gallery_admin.rename(gallery, identity, name)
            warnings.append(gallery_admin.namesakes(gallery, identity))
            return event
        response = await self._change(identity, rename)
        if not warnings or warnings[0] is None:
            return response
        # the event as published, and the warning for the one who renamed
        return JSONResponse({**json.loads(bytes(response.body)), "warning": warnings[0]})

    async def merge(self, request: Request) -> Response:
        """``POST /api/persons/{id}/merge`` with ``{"other": "p4"}``: p4 becomes {id}."""
        keep = _path_identity(request)
        body = await read_json_body(request, Merge)
        gone = _number(body.other, 400)
        if gone == keep:
            raise ApiError(409, f"cannot merge {Gallery.label(keep)} with itself")

        def merge(gallery: Gallery) -> Event:
            _require(gallery, gone)
            try:
                return gallery_admin.merge(gallery, keep, gone, force=body.force)
            except ConflictError as error:
                raise ApiError(409, str(error)) from None
        return await self._change(keep, merge)

    async def split(self, request: Request) -> Response:
        """``POST /api/persons/{id}/split`` with ``{"exemplars": [..], "appearances": [..]}``:
        those move to a new person."""
        identity = _path_identity(request)
        body = await read_json_body(request, Split)
        return await self._change(identity, lambda g: gallery_admin.split(
            g, identity, exemplars=body.exemplars, appearances=body.appearances))

    async def delete(self, request: Request) -> Response:
        """``DELETE /api/persons/{id}``."""
        identity = _path_identity(request)
        return await self._change(identity, lambda g: gallery_admin.delete(g, identity))

    async def forget(self, request: Request) -> Response:
        """``POST /api/persons/{id}/forget``: deleted, and erased from the file."""
        identity = _path_identity(request)
        return await self._change(identity, lambda g: gallery_admin.forget(g, identity))

    async def reject(self, request: Request) -> Response:
        """``POST /api/persons/{id}/reject`` with ``{"camera": "door"}``: "not this person" for
        the track on that camera now assigned {id}."""
        identity = _path_identity(request)
        camera = (await read_json_body(request, Reject)).camera
        person = Gallery.label(identity)

        def reject(_: Gallery) -> Event:
            try:
                tracks = self._engine.reject(identity, camera)
            except GalleryError as problem:  # the person exists: the camera does not
                raise ApiError(404, str(problem)) from None
            if not tracks:
                raise ApiError(409, f"no track on camera {camera!r} is {person} now")
            return IdentityRejected(person=person, camera=camera, tracks=tracks,
                                    time=time.time())
        return await self._change(identity, reject)

