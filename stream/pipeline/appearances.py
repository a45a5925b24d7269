"""Appearances on cameras, as events: a pure state machine with the clock passed in.

A person's appearance on a camera begins with the first face of theirs identified there
(``person.appeared``), is refreshed at most once per ``update_interval_s`` when there is a better
thumbnail or the face has moved (``person.updated``), and ends when the person has not been seen
there for ``left_after_s`` (``person.left``). Events are JSON-ready dicts; the bus adds the schema
version and sequence number when it publishes them.
"""

from __future__ import annotations

import base64
import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

from stream.config import EventSettings
from stream.identity.track import box_iou
from stream.imaging import jpeg_bytes
from stream.types import ImageArray

Event = dict[str, Any]
Box = tuple[float, float, float, float]
MOVED_IOU = 0.5  # a box overlapping the last announced one less than this has moved


def wall_time(seconds: float | None = None) -> str:
    """An ISO 8601 UTC timestamp with milliseconds, for event fields."""
    seconds = time.time() if seconds is None else seconds
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds))
    return f"{stamp}.{int(seconds * 1000) % 1000:03d}Z"


def thumbnail(crop: ImageArray, side: int) -> str:
    """``crop`` (a face crop) as a ``side`` x ``side`` JPEG, base64-encoded."""
    image = Image.fromarray(crop).resize((side, side), Image.Resampling.BILINEAR)
    return base64.b64encode(jpeg_bytes(np.asarray(image, np.uint8), quality=85)).decode("ascii")


@dataclass(frozen=True)
class Sighting:
    """A face of an identified person on one frame of a camera."""

    camera: str
    person: str  # public ID, "p3"
    new: bool  # the identity was created for this face's track
    frame_time: float  # on the camera's timeline, seconds
    captured_at: float  # wall clock when the frame was decoded
    since: float  # wall clock when the face's track began (it is identified a little later)
    box: Box
    score: float
    quality: float  # of the track's best face so far
    crop: ImageArray  # the track's best face so far (see ``stream.report.face_crop``)


@dataclass
class _Appearance:
    start: float
    last_seen: float
    announced_at: float
    box: Box
    best_quality: float


class Appearances:
    """The open appearances of every person on every camera."""

    def __init__(self, settings: EventSettings) -> None:
        self.settings = settings
        self._open: dict[tuple[str, str], _Appearance] = {}

    def __len__(self) -> int:
        return len(self._open)

    def see(self, sighting: Sighting, now: float) -> list[Event]:
        """Take one sighting; returns ``person.appeared`` or ``person.updated`` when due."""
        key = (sighting.camera, sighting.person)
        current = self._open.get(key)
        if current is None:
            self._open[key] = _Appearance(min(sighting.since, sighting.captured_at),
                                          sighting.captured_at, now, sighting.box,
                                          sighting.quality)
            return [self._face_event("person.appeared", sighting, now, with_thumbnail=True)]
        current.last_seen = max(current.last_seen, sighting.captured_at)
        better = sighting.quality > current.best_quality
        moved = box_iou(sighting.box, current.box) < MOVED_IOU
        if now - current.announced_at < self.settings.update_interval_s or not (better or moved):
            return []
        current.announced_at, current.box = now, sighting.box
        current.best_quality = max(current.best_quality, sighting.quality)
        return [self._face_event("person.updated", sighting, now, with_thumbnail=better)]

    def spans(self) -> list[tuple[str, str, float, float]]:
        """Every open appearance: camera, person, start and last sighting (wall clock)."""
        return [(camera, person, appearance.start, appearance.last_seen)
                for (camera, person), appearance in self._open.items()]

    def expire(self, now: float) -> list[Event]:
        """``person.left`` for every appearance not seen for ``left_after_s``."""
        gone = [key for key, appearance in self._open.items()
                if now - appearance.last_seen > self.settings.left_after_s]
        return [self._left(key, now) for key in gone]

    def close(self, camera: str | None = None, *, now: float) -> list[Event]:
        """``person.left`` for every open appearance (of ``camera``, or all): on shutdown, or
        when a camera stops."""
        keys = [key for key in self._open if camera is None or key[0] == camera]
        return [self._left(key, now) for key in keys]

    def end(self, camera: str, person: str, *, now: float) -> list[Event]:
        """``person.left`` for one appearance, if open (the person was merged, forgotten or
        rejected)."""
        return [self._left((camera, person), now)] if (camera, person) in self._open else []

    def _left(self, key: tuple[str, str], now: float) -> Event:
        appearance = self._open.pop(key)
        return {"type": "person.left", "camera": key[0], "person": key[1],
                "start": wall_time(appearance.start), "end": wall_time(appearance.last_seen),
                "duration_s": round(appearance.last_seen - appearance.start, 3),
                "time": wall_time(now)}

    def _face_event(self, kind: str, sighting: Sighting, now: float, *,
                    with_thumbnail: bool) -> Event:
        event: Event = {"type": kind, "camera": sighting.camera, "person": sighting.person}
        if kind == "person.appeared":
            event["new"] = sighting.new
        event.update({
            "frame_time": round(sighting.frame_time, 3),
            "captured_at": wall_time(sighting.captured_at), "time": wall_time(now),
            "box": [round(v, 1) for v in sighting.box], "score": round(sighting.score, 4),
            "thumbnail": (thumbnail(sighting.crop, self.settings.thumbnail_px)
                          if with_thumbnail else None),
            "latency_ms": round(max(0.0, now - sighting.captured_at) * 1000, 1)})
        return event


def status_event(camera: str, status: str, reason: str | None, retry_in_s: float | None,
                 now: float) -> Event:
    """A ``camera.status`` event."""
    event: Event = {"type": "camera.status", "camera": camera, "status": status,
                    "reason": reason, "time": wall_time(now)}
    if retry_in_s is not None:
        event["retry_in_s"] = round(retry_in_s, 2)
    return event
