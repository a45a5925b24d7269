"""``/api/cameras``: each camera's state and rates, and a preview of its latest analysed frame
with the faces' boxes, IDs and names (the dashboard's camera tiles)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stream.config import redact_url
from stream.errors import NotFoundError
from stream.identity.gallery import Gallery
from stream.imaging import jpeg_bytes
from stream.service.http.auth import ApiError
from stream.service.http.openapi import Api, Operation, Reply, error, jpeg
from stream.sources import CameraState

if TYPE_CHECKING:
    from stream.pipeline.live import Engine, Preview  # the models' thread: torch

PREVIEW_WIDTH = 640  # dashboard previews are scaled down to this width
LABEL_PX = 18  # the labels' text height: readable on a dashboard tile
NAMES_TIMEOUT_S = 2.0  # a busy model thread: the preview shows the IDs alone


class CameraInfo(BaseModel):
    """A camera: where it is (password hidden), its state, analysis rate and drops."""

    name: str
    url: str
    status: CameraState
    reason: str | None
    analyzed_fps: float
    frames_analyzed: int
    frames_dropped: int


class CamerasApi:
    """The camera routes, reading what ``engine`` shows of each camera."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def add_to(self, api: Api) -> None:
        """Add the routes to ``api``."""
        api.add("GET", "/api/cameras", self.cameras, Operation(
            "Every camera: status, analysis rate, drops",
            {200: Reply("the cameras", CameraInfo, many=True)}))
        api.add("GET", "/api/cameras/{name}/preview.jpg", self.preview, Operation(
            "The camera's latest analysed frame with its faces' boxes, IDs and names",
            {200: jpeg(f"a JPEG, at most {PREVIEW_WIDTH} px wide"),
             404: error("no such camera, or no frame analysed yet")}))

    async def cameras(self, _: Request) -> Response:
        """``GET /api/cameras``: each camera's state and rates."""
        return JSONResponse([CameraInfo(
            name=view.camera.name, url=redact_url(view.camera.config.url),
            status=view.camera.stats.state, reason=view.camera.stats.reason,
            analyzed_fps=round(view.analyzed_fps, 2), frames_analyzed=view.frames_analyzed,
            frames_dropped=view.camera.stats.frames_dropped).model_dump()
            for view in self._engine.cameras()])

    async def preview(self, request: Request) -> Response:
        """``GET /api/cameras/{name}/preview.jpg``: the latest analysed frame with its faces."""
        name = request.path_params["name"]
        views = [view for view in self._engine.cameras() if view.camera.name == name]
        if not views:
            raise ApiError(404, f"there is no camera {name!r}")
        preview = views[0].preview
        if preview is None:
            raise ApiError(404, f"camera {name!r} has no analysed frame yet")
        names = await self._names({person for _, person in preview.faces if person})
        picture = await asyncio.to_thread(render_preview, preview, names=names)
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})

    async def _names(self, people: set[str]) -> dict[str, str]:
        """The names of those of ``people`` who have one, asked of the model thread (it owns
        the gallery); none when it does not answer soon."""
        def lookup(gallery: Gallery) -> dict[str, str]:
            names = {}
            for person in people:
                with contextlib.suppress(NotFoundError):  # removed since the frame
                    name = gallery.store.identity(Gallery.number(person)).name
                    if name:
                        names[person] = name
            return names
        if not people or not self._engine.is_alive():
            return {}
        try:
            return await asyncio.wait_for(asyncio.wrap_future(self._engine.call(lookup)),
                                          NAMES_TIMEOUT_S)
        except TimeoutError:
            return {}


def render_preview(preview: Preview, width: int = PREVIEW_WIDTH, *,
                   names: dict[str, str] | None = None) -> bytes:
    """The frame scaled to ``width`` with each face's box and label drawn, as JPEG: the ID
    and, from ``names``, the person's name."""
    image = Image.fromarray(preview.image)
    scale = min(1.0, width / image.width)
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=LABEL_PX)
    height = LABEL_PX + 6
    right, bottom = image.width - 1.0, image.height - 1.0
    for box, person in preview.faces:
        # A face at the frame's edge has a box partly outside it: draw the part inside.
        x1, x2 = sorted(min(max(v * scale, 0.0), right) for v in (box[0], box[2]))
        y1, y2 = sorted(min(max(v * scale, 0.0), bottom) for v in (box[1], box[3]))
        colour = (46, 204, 113) if person else (241, 196, 15)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        label = (f"{person} {names[person]}" if person and names and person in names
                 else person or "?")
        top = y1 - height if y1 >= height else y1  # above the box, or inside at the top edge
        draw.rectangle((x1, top, x1 + draw.textlength(label, font=font) + 8, top + height),
                       fill=colour)
        draw.text((x1 + 4, top + 2), label, fill=(0, 0, 0), font=font)
    return jpeg_bytes(np.asarray(image, np.uint8), quality=80)
