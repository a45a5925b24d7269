"""A second look at a whole video: the identities the online decisions gave, joined where the
video as a whole shows they are one person.

Online, a track is decided on what has been seen so far, against a threshold that falls with its
faces, and a close call stays a split (the lesser error). Once the video has ended, every track is
known: the identities of the video are clustered again, agglomeratively with average linkage over
track templates (each track's unit mean of good faces). Two clusters are joined only when

- no face of one was on screen together with a face of the other (cannot-link: from the video's
  own frames and from the pairs the gallery remembers);
- their linkage is under the bar of both: the embedder's threshold, or, for a cluster of several
  tracks, ``widen`` times how far its tracks sit from each other when that is tighter (a person
  whose visits agree closely takes in only what is as close);
- each is the other's nearest cluster by ``margin`` (a look-alike in between makes it a split);
- when one of them was in the gallery before the video, the linkage is also under the online
  threshold for the other's faces; two such identities are never joined here (the gallery's
  ``merge`` does that, by a user).

Pure: tracks in, a mapping of identities out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stream.identity.matcher import MatchSettings, threshold_for
from stream.identity.track import Track, template
from stream.types import FloatArray


@dataclass(frozen=True)
class Join:
    """One identity taken into another by the refinement (with those joined into it before),
    and the linkage that decided it."""

    gone: int
    keep: int
    linkage: float


@dataclass
class _Cluster:
    identity: int  # the identity it keeps (the oldest of those joined)
    tracks: list[int]  # rows of the template matrix
    faces: int  # good faces, over its tracks
    frames: set[int]  # frames where one of its faces is sure
    identities: set[int]  # the online identities it holds
    existing: bool  # it holds an identity that was in the gallery before the video


def refine(tracks: Sequence[Track], settings: MatchSettings, *, existing: Callable[[int], bool],
           cannot_link: Callable[[int], frozenset[int]], widen: float = 1.5) -> list[Join]:
    """The joins the whole video supports, in the order they were made (see the module).

    ``existing``: whether an identity was in the gallery before the video; ``cannot_link``:
    the identities the gallery knows were on screen together with one."""
    clusters: dict[int, _Cluster] = {}
    vectors: list[FloatArray] = []
    for track in tracks:
        if track.identity is None:
            continue
        good = track.embeddings(good_only=True)
        if not len(good):
            continue
        cluster = clusters.setdefault(track.identity, _Cluster(
            track.identity, [], 0, set(), {track.identity}, existing(track.identity)))
        cluster.tracks.append(len(vectors))
        cluster.faces += len(good)
        cluster.frames |= {obs.frame for obs in track.observations
                           if obs.score >= settings.min_face_score}
        vectors.append(template(good))
    if len(clusters) < 2:
        return []
    matrix = np.stack(vectors)
    distances = np.linalg.norm(matrix[:, None] - matrix[None], axis=2)
    apart = {identity: cannot_link(identity) for identity in clusters}
    joins: list[Join] = []
    while (join := _best_join(list(clusters.values()), distances, apart, settings, widen)):
        keep, gone = join
        linkage = _linkage(keep, gone, distances)
        joins.append(Join(gone.identity, keep.identity, linkage))
        keep.tracks += gone.tracks
        keep.faces += gone.faces
        keep.frames |= gone.frames
        keep.identities |= gone.identities
        keep.existing = keep.existing or gone.existing
        del clusters[gone.identity]
    return joins


def _linkage(a: _Cluster, b: _Cluster, distances: FloatArray) -> float:
    """Average linkage: the mean distance between a track of ``a`` and a track of ``b``."""
    return float(distances[np.ix_(a.tracks, b.tracks)].mean())


def _bar(cluster: _Cluster, distances: FloatArray, threshold: float, widen: float) -> float:
    if len(cluster.tracks) < 2:
        return threshold
    block = distances[np.ix_(cluster.tracks, cluster.tracks)]
    spread = float(block.sum() / (len(cluster.tracks) * (len(cluster.tracks) - 1)))
    return min(threshold, widen * spread)


def _separate(a: _Cluster, b: _Cluster, apart: dict[int, frozenset[int]]) -> bool:
    """Whether ``a`` and ``b`` are surely two people: seen together, or both known before."""
    return ((a.existing and b.existing) or not a.frames.isdisjoint(b.frames)
            or any(not apart[identity].isdisjoint(b.identities) for identity in a.identities))


def _best_join(clusters: list[_Cluster], distances: FloatArray,
               apart: dict[int, frozenset[int]], settings: MatchSettings, widen: float
               ) -> tuple[_Cluster, _Cluster] | None:
    """The closest pair of clusters that may be joined (keep, gone), or ``None``."""
    count = len(clusters)
    linkage = np.full((count, count), np.inf)
    for i in range(count):
        for j in range(i + 1, count):
            if not _separate(clusters[i], clusters[j], apart):
                linkage[i, j] = linkage[j, i] = _linkage(clusters[i], clusters[j], distances)
    bars = [_bar(cluster, distances, settings.threshold, widen) for cluster in clusters]
    for flat in np.argsort(linkage, axis=None):
        i, j = divmod(int(flat), count)
        distance = linkage[i, j]
        if not np.isfinite(distance):
            return None
        if i > j or distance >= min(bars[i], bars[j]):
            continue
        others = np.delete(linkage[[i, j]], [i, j], axis=1)
        if others.size and float(others.min()) - distance < settings.margin:
            continue
        a, b = clusters[i], clusters[j]
        if a.existing or b.existing:
            new = b if a.existing else a
            if distance >= threshold_for(new.faces, settings):
                continue
        keep, gone = (a, b) if a.identity < b.identity else (b, a)
        if gone.existing:
            keep, gone = gone, keep
        return keep, gone
    return None


__all__ = ["Join", "refine"]
