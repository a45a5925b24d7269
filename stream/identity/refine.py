"""A second look at a whole video: the identities the online decisions gave, joined where the
video as a whole shows they are one person.

Online, a track is decided on what has been seen so far, against a threshold that falls with its
faces, and a close call stays a split (the lesser error). Once the video has ended, every track is
known: the identities of the video are clustered again, agglomeratively with average linkage over
track templates (each track's unit mean of good faces). Two clusters are joined only when

- no face of one was on screen together with a face of the other (cannot-link: from the video's
  own frames and from the pairs the gallery remembers);
- their linkage is under the bar of both: a clear match (the embedder's threshold less the
  matcher's ``close_band``: a close call stays a split, the lesser error), or, for a cluster of
  several tracks, ``widen`` times how far its tracks sit from each other when that is tighter (a
  person whose visits agree closely takes in only what is as close);
- no third cluster is within ``margin`` as close to one of them while it may not join the
  other (a look-alike of one of them makes it a split; a third part of the same person, close
  to both, does not);
- when one of them was in the gallery before the video, the linkage is also under the online
  threshold for the other's faces; two such identities are never joined here (the gallery's
  ``merge`` does that, by a user).

The closest such pair is joined first, and the linkages are brought up to date after each join.

Then the tracks never identified (faces short of the gate: small, soft) are looked at again
against the gallery as the whole video left it (:func:`recalled`): a track whose fair faces the
recall rule finds to be one of the video's people is labelled with them, never with someone it
was on screen with; none creates anyone. The rule's threshold is at least the bar of a join
(the threshold less ``close_band``), where online it falls with the faces: a small face's
template does not come nearer its person's large ones the more small faces it averages (what
differs is the size, not noise that averaging cancels). Someone known before the video is
labelled only by the online rule.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings, Verdict, recall, threshold_for
from stream.identity.track import Track, template
from stream.types import FloatArray

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Join:
    """One identity taken into another by the refinement (with those joined into it before),
    and the linkage that decided it."""

    gone: int
    keep: int
    linkage: float


def refine(tracks: Sequence[Track], settings: MatchSettings, *, existing: Callable[[int], bool],
           cannot_link: Callable[[int], frozenset[int]], widen: float = 1.5) -> list[Join]:
    """The joins the whole video supports, in the order they were made (see the module).

    ``existing``: whether an identity was in the gallery before the video; ``cannot_link``:
    the identities the gallery knows were on screen together with one."""
    rows: dict[int, list[int]] = {}  # identity -> its tracks' rows in ``vectors``
    faces: dict[int, int] = {}  # identity -> good faces over its tracks
    frames: dict[int, set[int]] = {}  # identity -> frames where a face of it is sure
    vectors: list[FloatArray] = []
    for track in tracks:
        if track.identity is None:
            continue
        good = track.embeddings(good_only=True)
        if not len(good):
            continue
        rows.setdefault(track.identity, []).append(len(vectors))
        faces[track.identity] = faces.get(track.identity, 0) + len(good)
        frames.setdefault(track.identity, set()).update(
            obs.frame for obs in track.observations if obs.score >= settings.min_face_score)
        vectors.append(template(good))
    identities = sorted(rows)
    count = len(identities)
    if count < 2:
        return []
    matrix = np.stack(vectors).astype(np.float64)
    distances = np.sqrt(np.maximum(0.0, 2.0 - 2.0 * matrix @ matrix.T))  # unit vectors
    members = np.zeros((count, len(vectors)))  # identity x track
    for c, identity in enumerate(identities):
        members[c, rows[identity]] = 1.0
    sums = members @ distances @ members.T  # cluster x cluster: summed track distances
    sizes = members.sum(axis=1)  # tracks per cluster
    known = np.array([existing(identity) for identity in identities])
    # Two people for sure: seen together, or remembered apart by the gallery.
    apart = np.array([[a != b and (not frames[a].isdisjoint(frames[b])
                                   or b in cannot_link(a)) for b in identities]
                      for a in identities])
    good_faces = np.array([faces[identity] for identity in identities])
    alive = np.ones(count, np.bool_)
    clear = settings.threshold - settings.close_band  # a clear match: closer calls stay splits
    joins: list[Join] = []
    while True:
        with np.errstate(divide="ignore", invalid="ignore"):
            linkage = sums / np.outer(sizes, sizes)  # average linkage
            spread = np.diag(sums) / (sizes * (sizes - 1))  # mean distance between its tracks
        bars = np.where(sizes > 1, np.minimum(clear, widen * spread), clear)
        linkage[apart | np.outer(known, known) | ~alive[:, None] | ~alive[None]] = np.inf
        np.fill_diagonal(linkage, np.inf)
        pair = _best_pair(linkage, bars, known, good_faces, settings)
        if pair is None:
            return joins
        i, j = pair
        # The oldest identity stays, unless the other was someone's before the video.
        keep, gone = (i, j) if known[i] or not known[j] else (j, i)
        joins.append(Join(identities[gone], identities[keep], float(linkage[i, j])))
        sums[keep] += sums[gone]
        sums[:, keep] += sums[:, gone]
        sizes[keep] += sizes[gone]
        apart[keep] |= apart[gone]
        apart[:, keep] |= apart[:, gone]
        known[keep] |= known[gone]
        good_faces[keep] += good_faces[gone]
        alive[gone] = False


@dataclass(frozen=True)
class Recalled:
    """A track never identified, found by the second look to be one of the video's people."""

    track: Track
    identity: int
    distance: float


def recalled(gallery: Gallery, tracks: Sequence[Track], settings: MatchSettings, *,
             existing: Callable[[int], bool]) -> list[Recalled]:
    """The tracks never identified that the recall rule (:func:`recall`: enough fair faces,
    clearly under the threshold, a margin over the next person; see the module) finds to be an
    identity of the video, never one with a face on screen at the same time; closest first,
    each labelled track's frames counting against the next (two faces of one frame are never
    both one person). ``existing``: whether an identity was in the gallery before the video."""
    frames: dict[int, set[int]] = {}  # identity -> frames where a face of it is
    for track in tracks:
        if track.identity is not None:
            frames.setdefault(track.identity, set()).update(track.frames)
    found = []
    for track in tracks:
        if track.identity is not None:
            continue
        seen = track.frames
        exclude = {identity for identity, its in frames.items() if not its.isdisjoint(seen)}
        decision = recall(gallery, track, settings, exclude,
                          at_least=settings.threshold - settings.close_band)
        if decision is not None and decision.identity is not None and existing(
                decision.identity):
            decision = recall(gallery, track, settings, exclude)
        if decision is None:
            continue
        log.debug("second look at track %d (%d faces from %.2f s): %s", track.number,
                  len(track.observations), track.observations[0].t, decision.reason)
        if decision.verdict is Verdict.KNOWN and decision.identity is not None and (
                decision.identity in frames):
            found.append(Recalled(track, decision.identity, decision.distance))
    result = []
    for item in sorted(found, key=lambda item: item.distance):
        if frames[item.identity].isdisjoint(item.track.frames):
            frames[item.identity].update(item.track.frames)
            result.append(item)
    return result


Floats = npt.NDArray[np.float64]


def _best_pair(linkage: Floats, bars: Floats, known: npt.NDArray[np.bool_],
               good_faces: npt.NDArray[np.int64], settings: MatchSettings
               ) -> tuple[int, int] | None:
    """The closest two clusters that may be joined (lower index first), or ``None``."""
    joinable = linkage < np.minimum.outer(bars, bars)
    first, second = np.nonzero(np.triu(joinable, 1))
    for k in np.argsort(linkage[first, second], kind="stable"):
        i, j = int(first[k]), int(second[k])
        distance = float(linkage[i, j])
        # A look-alike: nearly as close to one of them, and not to be joined with the other.
        rivals = ((linkage[i] - distance < settings.margin) & ~joinable[j]
                  | (linkage[j] - distance < settings.margin) & ~joinable[i])
        rivals[[i, j]] = False
        if rivals.any():
            continue
        if known[i] != known[j]:
            new = j if known[i] else i
            if distance >= threshold_for(int(good_faces[new]), settings):
                continue
        return i, j
    return None


__all__ = ["Join", "Recalled", "recalled", "refine"]
