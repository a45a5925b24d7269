"""File mode's second look (see :mod:`stream.identity.refine`), applied: the gallery merges the
identities the whole video shows are one person, the tracks take the kept identity, and the
appearances that ended are told again under it (what the report and the gallery's history use).
The lane's events themselves stay what ``facestream run`` said.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import replace

from stream.errors import StorageError
from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings
from stream.identity.refine import refine
from stream.identity.track import Track
from stream.types import PersonLeft

log = logging.getLogger(__name__)


def refine_video(gallery: Gallery, tracks: Iterable[Track], left: list[PersonLeft],
                 settings: MatchSettings, *, existing_up_to: int, left_after_s: float
                 ) -> list[PersonLeft]:
    """Join the video's identities where its tracks support it; returns ``left`` told again
    under the kept identities. ``existing_up_to``: the highest identity number in the gallery
    before the video (those are someone's already). Appearances of one person that end less
    than ``left_after_s`` before the next begins are one appearance, as they are online."""
    tracks = list(tracks)
    kept: dict[int, int] = {}
    for join in refine(tracks, settings, existing=lambda identity: identity <= existing_up_to,
                       cannot_link=gallery.store.cannot_link):
        try:
            gallery.merge(join.keep, join.gone)
        except StorageError as error:  # the gallery keeps them apart: so does the report
            log.warning("cannot merge %s into %s now (%s); the report keeps both",
                        Gallery.label(join.gone), Gallery.label(join.keep), error)
            continue
        log.info("refined: %s is %s (linkage %.3f)", Gallery.label(join.gone),
                 Gallery.label(join.keep), join.linkage)
        kept[join.gone] = join.keep
    if not kept:
        return left

    def final(identity: int) -> int:  # joined into one that was joined later itself
        while identity in kept:
            identity = kept[identity]
        return identity

    for track in tracks:
        if track.identity is not None:
            track.identity = final(track.identity)
    kept_as = {Gallery.label(gone): final(gone) for gone in kept}
    told = [event if event.person not in kept_as else replace(
        event, person=Gallery.label(kept_as[event.person]),
        name=gallery.store.identity(kept_as[event.person]).name) for event in left]
    return _joined(told, {Gallery.label(keep) for keep in kept_as.values()}, left_after_s)


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
