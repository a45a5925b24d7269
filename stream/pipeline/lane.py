"""The lane: what one camera or one video file goes through after the models, the same object in
``facestream analyze`` and ``facestream run``.

A lane takes each analysed frame with the faces the models found on it and runs the rest of the
pipeline, in order: tracks and identity decisions (an :class:`IdentityAssigner`, the product's
:class:`~stream.identity.matcher.Identifier`), the best face of each track, and appearances
(:mod:`stream.pipeline.appearances`). It returns each face's track and the typed events that
frame caused. It is synchronous and owns no thread: the file driver feeds it every sampled
frame, the live engine the newest frame of its camera.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt

from stream.config import EngineSettings, EventSettings
from stream.errors import NotFoundError, StorageError
from stream.identity.gallery import Gallery
from stream.identity.matcher import Identifier, MatchSettings
from stream.identity.refine import recalled
from stream.identity.track import Observation, Track
from stream.imaging import face_crop, jpeg_bytes
from stream.pipeline.appearances import Appearances, Sighting
from stream.types import (
    Event,
    Faces,
    FloatArray,
    Frame,
    IdentityMerged,
    ImageArray,
    PersonAppeared,
    PersonLeft,
)
from stream.vision.executor import FrameFaces, SharpnessBaseline

log = logging.getLogger(__name__)


class IdentityAssigner(Protocol):
    """What a lane needs of identity assignment (the product's :class:`Identifier`, or a
    benchmark's baseline)."""

    @property
    def highest(self) -> int:
        """The highest identity number given out so far (numbers only grow)."""
        ...

    def observe(self, t: float, observations: list[Observation]) -> tuple[list[Track],
                                                                          list[Track]]:
        """Add one frame's faces; returns each face's track and the tracks decided now."""
        ...

    def finish(self) -> list[Track]:
        """End every track (end of input, or a discontinuity); returns those decided now."""
        ...

    def skippable(self, t: float, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        """Faces whose embedding the assigner does not need (they continue a known track)."""
        ...

    def active_tracks(self) -> list[Track]:
        """The tracks that may still continue."""
        ...

    def split_tracks(self) -> list[Track]:
        """The tracks split off others by the latest :meth:`observe` (someone took a person's
        place): their faces were moved out of the track they had joined."""
        ...

    def merged(self) -> list[tuple[int, int]]:
        """The identities joined by the latest :meth:`observe`, as (kept, gone)."""
        ...


@dataclass(frozen=True)
class LaneStep:
    """What one frame gave: the track of each face (in the order of the faces), the tracks
    split off (holding earlier faces that were moved to them), and events."""

    tracks: list[Track]
    split: list[Track]
    events: list[Event]


def observations(result: FrameFaces) -> list[Observation]:
    """The faces the models found on one frame, as the identity stage takes them."""
    return [Observation(result.frame.index, result.frame.t, result.faces.boxes[i],
                        float(result.faces.scores[i]),
                        result.embeddings[i] if result.embedded[i] else None,
                        float(result.quality[i]), bool(result.good[i]), i,
                        bool(result.fair[i]), result.misses[i])
            for i in range(len(result.faces))]


class Lane:
    """One camera's (or file's) tracks, identities and appearances.

    ``name`` is the camera's name in events. Frames must come in time order; a frame marked
    ``discontinuity`` ends every track first (nothing continues across a cut, loop or
    reconnect). Only faces the detector is sure of (``min_face_score``) make or extend an
    appearance: a hand that joined a known person's track is not that person.

    ``name_of`` gives an identity's name (``None`` when unnamed); the lane keeps each answer
    until :meth:`forget_names`. ``threshold``, the match threshold, scales the events'
    ``confidence`` (``None`` without it).

    A track that ended undecided is kept for ``recall_within_s`` after its last face: when a
    track is decided meanwhile (someone is created, say, whose early faces were too small to
    create them), the second look's recall rule (:func:`stream.identity.refine.recalled`) is
    applied to the kept tracks, and one it finds to be someone is labelled with them and
    reported as seen, late.
    """

    def __init__(self, name: str, assigner: IdentityAssigner, events: EventSettings, *,
                 min_face_score: float = 0.0, threshold: float | None = None,
                 name_of: Callable[[int], str | None] = lambda identity: None,
                 recall_within_s: float = 30.0) -> None:
        self.name = name
        self.assigner = assigner
        self.min_face_score = min_face_score
        self.threshold = threshold
        self._name_of = name_of
        self._names: dict[int, str | None] = {}
        self.appearances = Appearances(name, events)
        self.sharpness = SharpnessBaseline()
        self.wall_offset = 0.0  # wall clock minus frame time, of the latest frame
        self.last_t: float | None = None  # frame time of the latest frame
        self.step = 0.0  # frame time from the frame before it to the latest
        self._best: dict[int, tuple[float, ImageArray]] = {}  # track -> its best face
        # The best faces of tracks that ended undecided, kept when a second look may identify
        # them (file mode: :meth:`appearances_of`); ``None``: not kept.
        self.undecided_faces: dict[int, tuple[float, ImageArray]] | None = None
        self.recall_within_s = recall_within_s
        self._existing_up_to = assigner.highest  # identities from before the lane began
        # Tracks that ended undecided lately, with their best faces (late recall), and every
        # track seen since the first of them began (who was on screen with them).
        self._ended: dict[int, tuple[Track, tuple[float, ImageArray]]] = {}
        self._recent: dict[int, Track] = {}

    def skippable(self, frame: Frame, faces: Faces) -> npt.NDArray[np.bool_]:
        """Faces of ``frame`` that need no embedding (for the models' worker)."""
        if frame.discontinuity:
            return np.zeros(len(faces), np.bool_)
        skip = self.assigner.skippable(frame.t, faces.boxes)
        if self.threshold is not None:  # a doubted face is the person only by its embedding
            skip &= faces.scores >= self.min_face_score
        return skip

    def take(self, result: FrameFaces, now: float) -> LaneStep:
        """Run one analysed frame through tracks, identities and appearances; ``now`` is the
        wall clock, for the events' ``time``."""
        frame = result.frame
        events: list[Event] = []
        before = list(self.assigner.active_tracks())
        if frame.discontinuity:
            events += self._decide_all(now)
        if frame.captured_at is not None:
            self.wall_offset = frame.captured_at - frame.t
        if self.last_t is not None and not frame.discontinuity:
            self.step = max(0.0, frame.t - self.last_t)
        self.last_t = frame.t
        events += self.tick(frame.t, now)
        highest = self.assigner.highest
        tracks, decided = self.assigner.observe(frame.t, observations(result))
        for keep, gone in self.assigner.merged():  # a young identity was found to be older
            self.appearances.move(Gallery.label(gone), Gallery.label(keep), self.person_name(keep))
            events.append(IdentityMerged(person=Gallery.label(keep), merged=Gallery.label(gone),
                                         time=now))
        for i, track in enumerate(tracks):
            if result.faces.scores[i] < self.min_face_score:
                continue  # never the face of an event
            quality = float(result.quality[i]) + (1.0 if result.good[i] else 0.0)
            if quality > self._best.get(track.number, (-1.0, None))[0]:
                self._best[track.number] = (quality, face_crop(frame.image,
                                                               result.faces.boxes[i]))
        # Tracks that ended undecided and were decided at their end: seen, and maybe gone.
        seen = [track for track in decided if track not in tracks]
        seen += [track for track in tracks if track.identity is not None
                 and (span := track.person_span(self.min_face_score, self.threshold))
                 and span[1] is track.last]
        for track in dict.fromkeys(seen):
            events += self._see(track, highest, now)
        live = {track.number for track in tracks + self.assigner.active_tracks()}
        ended = [track for track in before if track.number not in live]
        self._keep_undecided(ended)
        split = self.assigner.split_tracks()
        self._recent.update((track.number, track) for track in tracks + split)
        if self._keep_ended(frame.t, ended) or decided:
            events += self._recall(highest, now)
        self._best = {number: best for number, best in self._best.items() if number in live}
        return LaneStep(tracks, split, events)

    def tick(self, t: float, now: float) -> list[Event]:
        """End the appearances not seen for ``left_after_s`` before frame time ``t``."""
        undecided = [track.observations[0].t for track in self.assigner.active_tracks()
                     if track.identity is None]
        return self.appearances.expire(t, now, step=self.step, undecided_since=undecided)

    def finish(self, now: float) -> list[Event]:
        """End of input (the file ended, the camera stopped, the service stops): decide the
        waiting tracks and close every appearance."""
        before = list(self.assigner.active_tracks())
        highest = self.assigner.highest
        events = self._decide_all(now)
        self._keep_undecided(before)
        if self.last_t is not None:
            self._keep_ended(self.last_t, before)
        events += self._recall(highest, now)
        events += self.appearances.close(now)
        self._best.clear()
        self._ended.clear()
        self._recent.clear()
        return events

    def appearances_of(self, tracks: list[Track], now: float) -> list[PersonLeft]:
        """The appearances of ``tracks`` that ended undecided and were identified after the
        lane ended (file mode's second look), each as one appearance of its own."""
        kept = self.undecided_faces or {}
        appearances = Appearances(self.name, self.appearances.settings)
        events: list[Event] = []
        for track in tracks:
            if track.number in kept:
                self._best[track.number] = kept[track.number]
                events += self._see(track, self.assigner.highest, now, appearances)
                events += appearances.close(now)
        self._best.clear()
        return [event for event in events if isinstance(event, PersonLeft)]

    def _keep_undecided(self, ended: list[Track]) -> None:
        if self.undecided_faces is not None:
            self.undecided_faces.update((track.number, self._best[track.number])
                                        for track in ended
                                        if track.identity is None and track.number in self._best)

    def _keep_ended(self, t: float, ended: list[Track]) -> bool:
        """Keep the ``ended`` tracks that are undecided (with their best faces) for a late
        recall, and forget those that ended more than ``recall_within_s`` before ``t``, and
        the tracks seen before any kept or active one began; whether any was kept now."""
        kept = [track for track in ended if track.identity is None and track.number in self._best]
        self._ended.update((track.number, (track, self._best[track.number])) for track in kept)
        self._ended = {number: ended_track for number, ended_track in self._ended.items()
                       if t - ended_track[0].last.t <= self.recall_within_s}
        may_end = [track for track, _ in self._ended.values()] + self.assigner.active_tracks()
        since = min((track.observations[0].t for track in may_end), default=t)
        self._recent = {number: track for number, track in self._recent.items()
                        if track.last.t >= since}
        return bool(kept)

    def _recall(self, highest: int, now: float) -> list[Event]:
        """Label the kept tracks that the second look's recall rule finds to be someone now,
        never someone on screen with them; their appearances, told late."""
        if not self._ended or not isinstance(self.assigner, Identifier):
            return []
        known = [track for track in self._recent.values() if track.identity is not None]
        waiting = [track for track, _ in self._ended.values()]
        found = recalled(self.assigner.gallery, known + waiting, self.assigner.settings,
                         existing=lambda identity: identity <= self._existing_up_to)
        events: list[Event] = []
        for item in found:
            track = item.track
            track.identity, track.distance = item.identity, item.distance
            log.info("late recall: track %d (%d faces from %.1f s) is %s (at %.3f)",
                     track.number, len(track.observations), track.observations[0].t,
                     Gallery.label(item.identity), item.distance)
            self._best[track.number] = self._ended.pop(track.number)[1]
            events += self._see(track, highest, now, late=True)
        return events

    def end(self, person: str, now: float) -> list[Event]:
        """Close ``person``'s appearance (merged away, forgotten, or not them)."""
        return self.appearances.end(person, now)

    def forget_names(self) -> None:
        """Look names up again from now on (someone was renamed, merged or removed), the names
        of the open appearances at once: their ``person.left`` may come before another face."""
        self._names.clear()
        for appearance in self.appearances.open():
            identity = Gallery.number(appearance.person)
            name = self.person_name(identity)
            if identity in self._names:  # read, not a store that failed to answer
                self.appearances.rename(appearance.person, name)

    def person_name(self, identity: int) -> str | None:
        """The name of ``identity``; ``None`` when unnamed, or while the gallery cannot be
        read (asked again next time)."""
        if identity not in self._names:
            try:
                self._names[identity] = self._name_of(identity)
            except StorageError:
                return None
        return self._names[identity]

    def face_jpeg(self, track: Track) -> bytes | None:
        """The track's best face so far as JPEG, kept with the exemplars it gives."""
        best = self._best.get(track.number)
        return jpeg_bytes(best[1], quality=90) if best is not None else None

    def _decide_all(self, now: float) -> list[Event]:
        highest = self.assigner.highest
        events: list[Event] = []
        for track in self.assigner.finish():
            if track.identity is not None:
                events += self._see(track, highest, now)
        return events

    def _see(self, track: Track, highest: int, now: float,
             appearances: Appearances | None = None, *, late: bool = False) -> list[Event]:
        """``highest``: the highest identity number before this frame; a higher one with no
        distance was created for this track (one with a distance was joined: made elsewhere).
        ``appearances``: where the sighting goes (the lane's by default). ``late``: the track
        ended before it was identified (see :meth:`Appearances.recall`); the face of its
        event is its first one the detector is sure of, when the person was first seen."""
        assert track.identity is not None
        span = track.person_span(self.min_face_score, self.threshold)
        if span is None or track.number not in self._best:
            return []
        first, until = span
        # The face of the events is one the detector is sure of.
        faces: Iterable[Observation] = (track.observations if late
                                        else reversed(track.observations))
        last = next(obs for obs in faces if obs.score >= self.min_face_score)
        quality, crop = self._best[track.number]
        box = (float(last.box[0]), float(last.box[1]), float(last.box[2]), float(last.box[3]))
        distance = None if track.distance is None else round(track.distance, 4)
        confidence = None
        if distance is not None and self.threshold is not None:
            confidence = round(min(1.0, max(0.0, 1.0 - distance / self.threshold)), 3)
        told = self.appearances if appearances is None else appearances
        see = partial(told.recall, step=self.step) if late else told.see
        events = see(Sighting(
            person=Gallery.label(track.identity), name=self.person_name(track.identity),
            new=track.identity > highest and track.distance is None, frame_time=last.t,
            captured_at=last.t + self.wall_offset, since_frame_time=first.t,
            since=first.t + self.wall_offset, box=box, score=last.score, quality=quality,
            crop=crop, distance=distance, confidence=confidence, until_frame_time=until.t), now)
        for event in events if told is self.appearances else []:  # not a second look's
            if isinstance(event, PersonAppeared):
                log.info("%s %s on %s at %.1f s", who(event.person, event.name),
                         "appeared (new)" if event.new else "appeared", self.name, first.t)
        return events


def who(person: str, name: str | None) -> str:
    """A person as logs name them: ``p3 (Ada)``, or ``p3`` when unnamed."""
    return person if name is None else f"{person} ({name})"


def identifying_lane(name: str, gallery: Gallery, *, threshold: float, events: EventSettings,
                     source: str, engine: EngineSettings | None = None) -> Lane:
    """A lane deciding identities against ``gallery`` (the product's way). ``source`` (camera
    or file) is recorded with each exemplar; ``engine`` gives the gate and recall settings."""
    engine = engine or EngineSettings()
    settings = MatchSettings(threshold=threshold, min_face_score=engine.gate.min_score,
                             recall_faces=engine.recall.faces, recall_under=engine.recall.under)
    identifier = Identifier(gallery, settings, source=source)

    def name_of(identity: int) -> str | None:
        try:
            return gallery.store.identity(identity).name
        except NotFoundError:  # removed meanwhile: its appearance is about to end
            return None
    lane = Lane(name, identifier, events, min_face_score=settings.min_face_score,
                threshold=threshold, name_of=name_of)
    identifier.face_of = lane.face_jpeg
    return lane
