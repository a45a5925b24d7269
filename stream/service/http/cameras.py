"""``/api/cameras``: each camera's state and rates, and a preview of its latest analysed frame
with the faces' boxes and IDs (the dashboard's camera tiles)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageDraw
from pydantic import BaseModel
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from stream.config import redact_url
from stream.imaging import jpeg_bytes
from stream.service.http.auth import ApiError
from stream.service.http.openapi import Api, Operation, Reply, error, jpeg
from stream.sources import CameraState

if TYPE_CHECKING:
    from stream.pipeline.live import Engine, Preview  # the models' thread: torch

PREVIEW_WIDTH = 640  # dashboard previews are scaled down to this width


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
            "The camera's latest analysed frame with its faces' boxes and IDs",
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
        if views[0].preview is None:
            raise ApiError(404, f"camera {name!r} has no analysed frame yet")
        picture = await asyncio.to_thread(render_preview, views[0].preview)
        return Response(picture, media_type="image/jpeg", headers={"Cache-Control": "no-store"})


def render_preview(preview: Preview, width: int = PREVIEW_WIDTH) -> bytes:
    """The frame scaled to ``width`` with each face's box and ID drawn, as JPEG."""
    image = Image.fromarray(preview.image)
    scale = min(1.0, width / image.width)
    if scale < 1.0:
        image = image.resize((round(image.width * scale), round(image.height * scale)),
                             Image.Resampling.BILINEAR)
    draw = ImageDraw.Draw(image)
    right, bottom = image.width - 1.0, image.height - 1.0
    for box, person in preview.faces:
        # A face at the frame's edge has a box partly outside it: draw the part inside.
        x1, x2 = sorted(min(max(v * scale, 0.0), right) for v in (box[0], box[2]))
        y1, y2 = sorted(min(max(v * scale, 0.0), bottom) for v in (box[1], box[3]))
        colour = (46, 204, 113) if person else (241, 196, 15)
        draw.rectangle((x1, y1, x2, y2), outline=colour, width=2)
        label = person or "?"
        top = y1 - 14 if y1 >= 14 else y1  # above the box, or inside it at the top edge
        draw.rectangle((x1, top, x1 + 8 * len(label) + 6, top + 14), fill=colour)
        draw.text((x1 + 3, top + 1), label, fill=(0, 0, 0))
    return jpeg_bytes(np.asarray(image, np.uint8), quality=80)
