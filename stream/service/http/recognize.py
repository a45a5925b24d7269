"""``POST /api/recognize``: who is in this photo (CompreFace's recognition, facestream's answer).

The image comes as the multipart field ``file`` or as JSON ``{"image": "<base64>"}``; either is
read whole, within ``server.max_body_bytes``, by the access guard, and stays in memory. It is
decoded off the model thread as enrollment photos are (at most
:data:`~stream.gallery_admin.MAX_PHOTO_PIXELS`, scaled down to
:data:`~stream.gallery_admin.MAX_PHOTO_SIDE`), then the model thread finds and embeds its faces
between two camera frames and looks each one up in the gallery, which it does not change. A
photo without faces is an empty list, not an error.
"""

from __future__ import annotations

import asyncio
import base64
import io
import re
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
from PIL import Image
from pydantic import BaseModel, Field
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stream import gallery_admin
from stream.identity.gallery import Gallery
from stream.service.http.access import MULTIPART
from stream.service.http.auth import ApiError
from stream.service.http.openapi import Api, Operation, Reply, error
from stream.service.http.persons import JsonBody, on_model_thread, read_json_body
from stream.types import FloatArray, Frame, ImageArray

if TYPE_CHECKING:
    from stream.pipeline.live import Engine  # the models' thread: torch
    from stream.vision.executor import VisionWorker

PATH = "/api/recognize"
FIELD = "file"  # the multipart field of the image, as CompreFace names it
MAX_PARTS = 16  # of a multipart form: the image and a few other fields
MAX_PART_HEAD = 4096  # bytes of a form part's headers looked at
DISPOSITION = re.compile(r"^content-disposition:[ \t]*form-data(.*)$", re.IGNORECASE | re.MULTILINE)
NEIGHBOURS = 16  # exemplars looked at per face: the nearest ones may be marked "not this person"
USAGE = (f'send the image as the multipart field "{FIELD}", or as JSON {{"image": "<base64 '
         'image>"}')


class RecognizeImage(JsonBody):
    """The JSON form of the request (the other is a multipart upload, field ``file``)."""

    usage = USAGE
    image: str = Field(description="a JPEG or PNG image, base64")


class PersonRef(BaseModel):
    """A person of the gallery."""

    id: str
    name: str | None


class RecognizedFace(BaseModel):
    """One face of the image and who it is."""

    box: tuple[float, float, float, float] = Field(description="x1, y1, x2, y2 in the image's "
                                                   "pixels (as it shows upright)")
    score: float = Field(description="the detector's confidence that this is a face, 0..1")
    person: PersonRef | None = Field(description="the gallery's person nearest to the face, "
                                     "when under the threshold; null: nobody known")
    distance: float | None = Field(description="to the nearest person of the gallery (null "
                                   "when it is empty); under the threshold is the same person")


class Recognized(BaseModel):
    """The faces of an image, largest first."""

    faces: list[RecognizedFace]
    threshold: float = Field(description="the distance under which a face is a person")


class RecognizeApi:
    """The recognize route; ``engine`` runs the models and holds the gallery."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_to(self, api: Api) -> None:
        """Add the route to ``api``."""
        api.add("POST", PATH, self.recognize, Operation(
            "Who is in this photo: its faces with their boxes, detection scores, the person "
            "each one is (or null) and the distance; the gallery is not changed. Send the "
            f"image as JSON (below) or as the multipart/form-data field `{FIELD}`", {
                200: Reply("the faces found (none: an empty list)", Recognized),
                400: error("not an image, a damaged one, or one of too many pixels"),
                503: error("the model thread is not running or did not answer")},
            RecognizeImage, upload=FIELD))

    async def recognize(self, request: Request) -> Response:
        """``POST /api/recognize``: the faces of the uploaded image and who they are."""
        data = await _upload(request)
        image, scale = await asyncio.to_thread(_decode, data)
        engine = self._engine
        faces = await on_model_thread(engine, lambda gallery: recognize(
            gallery, engine.worker, image, engine.threshold, scale=scale))
        return JSONResponse(Recognized(faces=faces, threshold=engine.threshold).model_dump())


def recognize(gallery: Gallery, worker: VisionWorker, image: ImageArray, threshold: float, *,
              scale: float = 1.0) -> list[RecognizedFace]:
    """The faces of ``image``, largest first, each with the person of ``gallery`` it is (nearest
    and under ``threshold``, not marked "not this person" for such a face); boxes times
    ``scale``. Run it in the thread that owns ``worker`` and ``gallery``."""
    found = worker.process([Frame(0, 0.0, image)])[0]
    boxes = found.faces.boxes
    order = np.argsort(-(boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]), kind="stable")
    neighbours = gallery.search(found.embeddings, NEIGHBOURS)
    faces = []
    for i in order:
        identity, distance = _nearest(gallery, found.embeddings[i], neighbours.identities[i],
                                      neighbours.distances[i], threshold)
        person = None
        if identity is not None and distance is not None and distance < threshold:
            person = PersonRef(id=Gallery.label(identity),
                               name=gallery.store.identity(identity).name)
        x1, y1, x2, y2 = (round(float(value) * scale, 1) for value in boxes[i])
        faces.append(RecognizedFace(box=(x1, y1, x2, y2),
                                    score=round(float(found.faces.scores[i]), 4),
                                    person=person, distance=distance))
    return faces


def _nearest(gallery: Gallery, vector: FloatArray, identities: npt.NDArray[np.int64],
             distances: FloatArray, threshold: float) -> tuple[int | None, float | None]:
    """The nearest identity among a face's neighbours that is not marked "not this person"
    for faces like it, and its distance (rounded)."""
    for identity, distance in zip(identities, distances, strict=True):
        if identity >= 0 and not gallery.rejected(int(identity), vector, threshold):
            return int(identity), round(float(distance), 4)
    return None, None


async def _upload(request: Request) -> bytes:
    """The image's bytes, from the multipart field or the JSON body."""
    kind = request.headers.get("content-type", "")
    if kind.partition(";")[0].strip().lower() != MULTIPART:
        body = await read_json_body(request, RecognizeImage)
        try:
            return base64.b64decode(body.image, validate=True)
        except ValueError:
            raise ApiError(400, '"image" must be a base64-encoded image') from None
    # The whole body is in memory already (the access guard read it, within its limit): it is
    # taken apart there, never spooling a face to disk.
    found = _form_file(kind, await request.body())
    if found is None:
        raise ApiError(400, USAGE)
    return found


def _form_file(kind: str, body: bytes) -> bytes | None:
    """The content of the part named :data:`FIELD` of a ``multipart/form-data`` body (RFC 7578)
    of type ``kind``; ``None`` when it has none or several. Only the first :data:`MAX_PARTS`
    parts are looked at (the standard library's MIME parser takes seconds over a body of many
    short lines, and fails on some malformed ones)."""
    boundary = _parameter(kind, "boundary")
    if not boundary:
        return None
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    found = []
    for piece in (b"\r\n" + body).split(delimiter, MAX_PARTS)[1:MAX_PARTS]:
        if piece.startswith(b"--"):  # the closing delimiter
            break
        _, _, part = piece.partition(b"\r\n")  # after the rest of the delimiter's line
        head, separator, content = part.partition(b"\r\n\r\n")
        disposition = DISPOSITION.search(head[:MAX_PART_HEAD].decode("latin-1"))
        if separator and disposition and _parameter(disposition[1], "name") == FIELD:
            found.append(content)
    return found[0] if len(found) == 1 else None


def _parameter(header: str, name: str) -> str | None:
    """The parameter ``name`` of a header value (``; name=value`` or ``; name="value"``)."""
    match = re.search(rf';\s*{name}\s*=\s*(?:"([^"]*)"|([^;\s"]*))', header, re.IGNORECASE)
    return None if match is None else match[1] if match[1] is not None else match[2]


def _decode(data: bytes) -> tuple[ImageArray, float]:
    """The image as enrollment decodes photos, and the factor from its pixels to the image's
    own (it is scaled down when large)."""
    [photo] = gallery_admin.read_photos([data])
    with Image.open(io.BytesIO(data)) as opened:  # the header only: read_photos decoded it
        side = max(opened.size)
    return photo.image, side / max(photo.image.shape[:2])
