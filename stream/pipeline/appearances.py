"""Appearances on one camera (or file), as events: a pure state machine with the clock passed in.

This is the one definition of an appearance, for the live events and the file report alike:

- it begins with the first face of a track identified as the person (``person.appeared``); when
  the track is identified a little after it began, the appearance begins where the track did
  (at its first face that is the person: see :meth:`stream.identity.track.Track.person_span`);
- it is refreshed at most once per ``update_interval_s`` when there is a better face or the face
  has moved (``person.updated``);
- it ends when the person has not been seen for ``left_after_s`` on the camera's timeline
  (``person.left``), unless a track that began in that time is still undecided (it may be them:
  the appearance waits for its decision); and when the camera, the service or the identity ends.
  The absence runs between the frames looked at, so a camera that samples sparsely or drops
  frames does not cut an appearance that a file analysed more densely shows whole.

Times are kept twice: on the camera's timeline (frame times, what the file report uses) and on
the wall clock (what live events carry). Each appearance has an ID (:func:`appearance_id`) that
its appeared, updated and left events share.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass

from stream.config import EventSettings
from stream.identity.track import box_iou
from stream.types import Box, Event, ImageArray, PersonAppeared, PersonLeft, PersonUpdated

MOVED_IOU = 0.5  # a box overlapping the last announced one less than this has moved


@dataclass(frozen=True)
class Sighting:
    """A face of an identified person on one frame."""

    person: str  # public ID, "p3"
    name: str | None  # the person's name now
    new: bool  # the identity was created for this face's track
    frame_time: float  # on the camera's timeline, seconds
    captured_at: float  # wall clock when the frame was decoded
    since_frame_time: float  # when the face's track began (it is identified a little later)
    since: float  # the same moment on the wall clock
    box: Box
    score: float
    quality: float  # of the track's best face so far
    crop: ImageArray  # the track's best face so far (see ``stream.imaging.face_crop``)
    distance: float | None  # of the track's identity decision; None: it created the person
    confidence: float | None  # see ``stream.types.PersonAppeared``
    # The person's latest face when later than ``frame_time``: one the detector doubted that
    # is them by its embedding; it extends the appearance but is the face of no event.
    until_frame_time: float | None = None

    @property
    def last_frame_time(self) -> float:
        """When the person was last seen, on the camera's timeline."""
        return max(self.frame_time, self.until_frame_time or self.frame_time)

    @property
    def last_captured_at(self) -> float:
        """When the person was last seen, on the wall clock."""
        return self.captured_at + self.last_frame_time - self.frame_time


def appearance_id(camera: str, now: float) -> str:
    """A new appearance's ID, ``<camera>-<ms>-<random>``: the wall clock in milliseconds since
    the epoch as 11 hex digits (so a camera's IDs sort by time) and 8 random hex digits (so
    IDs made on other machines or after a restart never collide), e.g.
    ``door-19ad4a1c2e0-5f3a9c01``."""
    return f"{camera}-{int(now * 1000):011x}-{secrets.token_hex(4)}"


@dataclass
class _Appearance:
    id: str
    name: str | None
    start_t: float
    last_t: float
    start: float
    last_seen: float
    announced_at: float
    box: Box
    best_quality: float
    best_crop: ImageArray
    distance: float | None  # the closest decision so far
    confidence: float | None


@dataclass(frozen=True)
class OpenAppearance:
    """An appearance still going on: who, since when and until when so far (wall clock)."""

    person: str
    start: float
    last_seen: float


class Appearances:
    """The open appearances of every person on one camera."""

    def __init__(self, camera: str, settings: EventSettings) -> None:
        self.camera = camera
        self.settings = settings
        self._open: dict[str, _Appearance] = {}

    def __len__(self) -> int:
        return len(self._open)

    def see(self, sighting: Sighting, now: float) -> list[Event]:
        """Take one sighting; returns ``person.appeared`` or ``person.updated`` when due."""
        current = self._open.get(sighting.person)
        if current is None:
            current = self._open[sighting.person] = _Appearance(
                appearance_id(self.camera, now), sighting.name,
                min(sighting.since_frame_time, sighting.frame_time), sighting.last_frame_time,
                min(sighting.since, sighting.captured_at), sighting.last_captured_at, now,
                sighting.box, sighting.quality, sighting.crop, sighting.distance,
                sighting.confidence)
            return [PersonAppeared(
                camera=self.camera, person=sighting.person, name=sighting.name,
                appearance=current.id, new=sighting.new,
                frame_time=round(sighting.frame_time, 3), captured_at=sighting.captured_at,
                time=now, box=_rounded(sighting.box), score=round(sighting.score, 4),
                distance=sighting.distance, confidence=sighting.confidence,
                thumbnail=sighting.crop, latency_ms=_latency_ms(sighting, now))]
        current.name = sighting.name
        if sighting.distance is not None and (current.distance is None
                                              or sighting.distance < current.distance):
            current.distance, current.confidence = sighting.distance, sighting.confidence
        current.start_t = min(current.start_t, sighting.since_frame_time)
        current.start = min(current.start, sighting.since)
        current.last_t = max(current.last_t, sighting.last_frame_time)
        current.last_seen = max(current.last_seen, sighting.last_captured_at)
        better = sighting.quality > current.best_quality
        if better:
            current.best_quality, current.best_crop = sighting.quality, sighting.crop
        moved = box_iou(sighting.box, current.box) < MOVED_IOU
        if now - current.announced_at < self.settings.update_interval_s or not (better or moved):
            return []
        current.announced_at, current.box = now, sighting.box
        return [PersonUpdated(
            camera=self.camera, person=sighting.person, name=sighting.name,
            appearance=current.id, frame_time=round(sighting.frame_time, 3),
            captured_at=sighting.captured_at,
            time=now, box=_rounded(sighting.box), score=round(sighting.score, 4),
            distance=sighting.distance, confidence=sighting.confidence,
            thumbnail=sighting.crop if better else None,
            latency_ms=_latency_ms(sighting, now))]

    def recall(self, sighting: Sighting, now: float, *, step: float = 0.0) -> list[Event]:
        """Take a sighting of the past: a track that ended before it was identified (a late
        recall; ``frame_time`` and ``box`` are its first face). The person's open appearance
        that began less than ``left_after_s`` (and ``step``, see :meth:`expire`) after the
        track's last face takes it in, from its first face on, and says nothing now; otherwise
        it is an appearance of its own, over already: ``person.appeared`` (late) and
        ``person.left``."""
        current = self._open.get(sighting.person)
        gap = self.settings.left_after_s + step
        if current is None or current.start_t - sighting.last_frame_time > gap:
            past = Appearances(self.camera, self.settings)
            return past.see(sighting, now) + past.close(now)
        current.start_t = min(current.start_t, sighting.since_frame_time, sighting.frame_time)
        current.start = min(current.start, sighting.since, sighting.captured_at)
        current.last_t = max(current.last_t, sighting.last_frame_time)
        current.last_seen = max(current.last_seen, sighting.last_captured_at)
        if sighting.quality > current.best_quality:
            current.best_quality, current.best_crop = sighting.quality, sighting.crop
        return []

    def open(self) -> list[OpenAppearance]:
        """Every open appearance, for saving how far they have got."""
        return [OpenAppearance(person, appearance.start, appearance.last_seen)
                for person, appearance in self._open.items()]

    def rename(self, person: str, name: str | None) -> None:
        """``person`` is now called ``name``: their open appearance's next events say so, its
        ``person.left`` too."""
        if person in self._open:
            self._open[person].name = name

    def move(self, gone: str, keep: str, name: str | None) -> None:
        """``gone`` was merged into ``keep`` (called ``name``): its open appearance goes on as
        ``keep``'s, made one with theirs when both are open."""
        moved = self._open.pop(gone, None)
        if moved is None:
            return
        current = self._open.setdefault(keep, moved)
        current.name = name
        if current is not moved:
            current.start_t, current.start = (min(current.start_t, moved.start_t),
                                              min(current.start, moved.start))
            current.last_t, current.last_seen = (max(current.last_t, moved.last_t),
                                                 max(current.last_seen, moved.last_seen))
            if moved.best_quality > current.best_quality:
                current.best_quality, current.best_crop = moved.best_quality, moved.best_crop

    def expire(self, t: float, now: float, *, step: float = 0.0,
               undecided_since: Iterable[float] = ()) -> list[Event]:
        """``person.left`` for every appearance not seen for ``left_after_s`` before ``t`` (on
        the camera's timeline). ``step``: the time between the frames looked at; a face seen
        at a frame may have been there since the frame before, so an absence lasts from the
        frame after the person's last face to the frame before the next (what the report's
        half a step of widening on either side shows). ``undecided_since``: when the tracks not
        yet identified began; an appearance whose absence one of them began in stays open
        until it is decided."""
        waiting = list(undecided_since)
        gap = self.settings.left_after_s + step
        gone = [person for person, appearance in self._open.items()
                if t - appearance.last_t > gap
                and not any(appearance.last_t < began <= appearance.last_t + gap
                            for began in waiting)]
        return [self._left(person, now) for person in gone]

    def close(self, now: float) -> list[Event]:
        """``person.left`` for every open appearance (the camera stopped, or the service)."""
        return [self._left(person, now) for person in list(self._open)]

    def end(self, person: str, now: float) -> list[Event]:
        """``person.left`` for one appearance, if open (the person was merged, forgotten or
        rejected)."""
        return [self._left(person, now)] if person in self._open else []

    def _left(self, person: str, now: float) -> PersonLeft:
        appearance = self._open.pop(person)
        return PersonLeft(
            camera=self.camera, person=person, name=appearance.name,
            appearance=appearance.id, start=appearance.start,
            end=appearance.last_seen,
            duration_s=round(appearance.last_seen - appearance.start, 3),
            start_frame_time=round(appearance.start_t, 3),
            end_frame_time=round(appearance.last_t, 3), thumbnail=appearance.best_crop,
            quality=round(appearance.best_quality, 3), distance=appearance.distance,
            confidence=appearance.confidence, time=now)


def _rounded(box: Box) -> Box:
    return (round(box[0], 1), round(box[1], 1), round(box[2], 1), round(box[3], 1))


def _latency_ms(sighting: Sighting, now: float) -> float:
    return round(max(0.0, now - sighting.captured_at) * 1000, 1)
