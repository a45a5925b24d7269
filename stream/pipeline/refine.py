"""File mode's second look (see :mod:`stream.identity.refine`), applied: the gallery merges the
identities the whole video shows are one person, the tracks take the kept identity, and the
appearances that ended are told again under it (what the report and the gallery's history use);
tracks never identified that are clearly one of the video's people are labelled with them and
given their appearances; and each appearance takes in the faces of its tracks that the detector
doubted but that are the person by their embedding. The lane's events themselves stay what
``facestream run`` said.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import replace

import numpy as np

from stream.errors import StorageError
from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings
from stream.identity.refine import recalled, refine
from stream.identity.track import Track, template
from stream.types import PersonLeft

log = logging.getLogger(__name__)
_ROUNDING = 1e-3  # appearances' frame times are rounded to milliseconds


def refine_video(gallery: Gallery, tracks: Iterable[Track], left: list[PersonLeft],
                 settings: MatchSettings, *, existing_up_to: int, left_after_s: float,
                 appearances_of: Callable[[list[Track]], list[PersonLeft]]
                 ) -> list[PersonLeft]:
    """Join the video's identities where its tracks support it and label the tracks never
    identified that are clearly one of them; returns ``left`` told again under the kept
    identities, with the appearances of the labelled tracks (``appearances_of`` tells them).
    ``existing_up_to``: the highest identity number in the gallery before the video (those are
    someone's already). Appearances of one person that end less than ``left_after_s`` before
    the next begins are one appearance, as they are online."""
    tracks = list(tracks)
    kept: dict[int, int] = {}

    def existing(identity: int) -> bool:
        return identity <= existing_up_to

    for join in refine(tracks, settings, existing=existing, cannot_link=gallery.store.cannot_link):
        try:
            gallery.merge(join.keep, join.gone)
        except StorageError as error:  # the gallery keeps them apart: so does the report
            log.warning("cannot merge %s into %s now (%s); the report keeps both",
                        Gallery.label(join.gone), Gallery.label(join.keep), error)
            continue
        log.info("refined: %s is %s (linkage %.3f)", Gallery.label(join.gone),
                 Gallery.label(join.keep), join.linkage)
        kept[join.gone] = join.keep

    def final(identity: int) -> int:  # joined into one that was joined later itself
        while identity in kept:
            identity = kept[identity]
        return identity

    for track in tracks:
        if track.identity is not None:
            track.identity = final(track.identity)
    found = recalled(gallery, tracks, settings, existing=existing)
    for item in found:
        item.track.identity, item.track.distance = item.identity, item.distance
        log.info("refined: track %d (%d faces from %.1f s) is %s (at %.3f)", item.track.number,
                 len(item.track.observations), item.track.observations[0].t,
                 Gallery.label(item.identity), item.distance)
    kept_as = {Gallery.label(gone): final(gone) for gone in kept}
    told = [event if event.person not in kept_as else replace(
        event, person=Gallery.label(kept_as[event.person]),
        name=gallery.store.identity(kept_as[event.person]).name) for event in left]
    told += appearances_of([item.track for item in found])
    told, widened = _widened(told, tracks, settings)
    joined = {Gallery.label(identity) for identity in [*kept_as.values(),
                                                       *(item.identity for item in found)]}
    if not joined and not widened:
        return left
    return _joined(told, joined | widened, left_after_s)


def _widened(left: list[PersonLeft], tracks: list[Track], settings: MatchSettings
             ) -> tuple[list[PersonLeft], set[str]]:
    """``left`` with each appearance widened to the faces of its tracks that are the person
    though the detector doubted them (under ``min_face_score``: online, only faces it is sure
    of make an appearance), and the persons whose appearances were widened. A face is the
    person when its embedding is within the threshold of its track's template; a hand or a
    dress that joined the track is far from it."""
    spans: dict[str, list[tuple[float, float, float, float]]] = {}  # sure span, whole span
    for track in tracks:
        if track.identity is None:
            continue
        sure = [obs.t for obs in track.observations if obs.score >= settings.min_face_score]
        vectors = track.embeddings(good_only=True)
        if not sure or not len(vectors):
            continue
        centre = template(vectors)
        theirs = [obs.t for obs in track.observations if obs.embedding is not None
                  and float(np.linalg.norm(obs.embedding - centre)) < settings.threshold]
        spans.setdefault(Gallery.label(track.identity), []).append(
            (sure[0], sure[-1], min([sure[0], *theirs]), max([sure[-1], *theirs])))
    result, widened = [], set()
    for event in left:
        start, end = event.start_frame_time, event.end_frame_time
        for first, last, earliest, latest in spans.get(event.person, []):
            # The appearance began (or ended) with the first (or last) sure face of the track.
            if abs(first - event.start_frame_time) < _ROUNDING:
                start = min(start, earliest)
            if abs(last - event.end_frame_time) < _ROUNDING:
                end = max(end, latest)
        if (start, end) == (event.start_frame_time, event.end_frame_time):
            result.append(event)
            continue
        widened.add(event.person)
        earlier, later = event.start_frame_time - start, end - event.end_frame_time
        result.append(replace(event, start=event.start - earlier, end=event.end + later,
                              duration_s=round(event.duration_s + earlier + later, 3),
                              start_frame_time=round(start, 3), end_frame_time=round(end, 3)))
    return result, widened


def _joined(left: list[PersonLeft], joined: set[str], gap_s: float) -> list[PersonLeft]:
    """The appearances in time order, those of a ``joined`` person less than ``gap_s`` apart
    made one (the others are as the lane ended them)."""
    result: list[PersonLeft] = []
    last: dict[str, int] = {}  # person -> index of their latest appearance in result
    for event in sorted(left, key=lambda e: (e.start_frame_time, e.end_frame_time)):
        before = last.get(event.person)
        if (before is None or event.person not in joined
                or event.start_frame_time - result[before].end_frame_time > gap_s):
            last[event.person] = len(result)
            result.append(event)
            continue
        earlier = result[before]
        best = max(earlier, event, key=lambda e: e.quality)
        start, end = min(earlier.start, event.start), max(earlier.end, event.end)
        result[before] = replace(
            earlier, start=start, end=end, duration_s=round(end - start, 3),
            end_frame_time=max(earlier.end_frame_time, event.end_frame_time),
            thumbnail=best.thumbnail, quality=best.quality, time=max(earlier.time, event.time))
    return result


__all__ = ["refine_video"]
