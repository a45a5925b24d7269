"""Short-term tracks: detections on consecutive sampled frames linked by box overlap and embedding.

A person is decided on a track (several faces), never on one frame. The tracker is pure: it takes
observations with their time and returns which track each joined, and the tracks that ended.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from stream.types import FloatArray, GateMiss


@dataclass(frozen=True, eq=False)
class Observation:
    """One detected face on a sampled frame, embedded and graded (equal only to itself)."""

    frame: int
    t: float
    box: FloatArray  # (4,) x1, y1, x2, y2
    score: float
    embedding: FloatArray | None  # (D,) unit vector; None when not computed (see Tracker)
    quality: float  # higher is better; used to pick thumbnails and exemplars
    good: bool  # passed the quality gate: may create or confirm an identity
    face: int = 0  # its index among the faces found on its frame
    fair: bool = False  # good, or short of the gate but fit to join a known person
    miss: GateMiss | None = None  # why it is not good: the gate's first limit it missed


@dataclass(eq=False)
class Track:
    """A run of observations believed to be one face."""

    number: int
    observations: list[Observation] = field(default_factory=list)
    identity: int | None = None
    distance: float | None = None  # of the decision that found it known (None: it created it)
    # The faces that joined it after a gap or a jump, on their embedding alone: someone else
    # may have stepped into the place there (see Tracker).
    seams: list[Observation] = field(default_factory=list)

    @property
    def last(self) -> Observation:
        return self.observations[-1]

    @property
    def frames(self) -> set[int]:
        return {obs.frame for obs in self.observations}

    @property
    def embedded(self) -> list[Observation]:
        """The observations whose embedding was computed (a track always starts with one)."""
        return [obs for obs in self.observations if obs.embedding is not None]

    def embeddings(self, *, good_only: bool) -> FloatArray:
        """Computed embeddings (M, D), of all observations or of those that passed the gate."""
        vectors = vectors_of(self.observations, good_only=good_only)
        if not vectors:
            dim = vectors_of(self.observations)[0].shape[0]
            return np.zeros((0, dim), np.float32)
        return np.stack(vectors)

    def recent_embedding(self, count: int = 5) -> FloatArray:
        """Unit mean of the last ``count`` computed embeddings: what the face looks like now."""
        return template(vectors_of(self.observations)[-count:])

    def person_span(self, min_score: float, threshold: float | None
                    ) -> tuple[Observation, Observation] | None:
        """The first and the last of the track's faces that are surely its person: the detector
        is sure of them (``min_score``), or, given a ``threshold``, it doubted them but their
        embedding is within it of the template of the track's recent good faces that it is
        sure of (a hand or a dress that joined the track is far from it). ``None`` when the
        detector is sure of none of its faces."""
        good = vectors_of([obs for obs in self.observations[-DRIFT_WINDOW:]
                           if obs.good and obs.score >= min_score])
        centre = template(good) if good and threshold is not None else None

        def theirs(obs: Observation) -> bool:
            if obs.score >= min_score:
                return True
            return (centre is not None and threshold is not None and obs.embedding is not None
                    and float(np.linalg.norm(obs.embedding - centre)) < threshold)
        # A track may last hours: look from each end, not at all of it.
        first = next((obs for obs in self.observations if theirs(obs)), None)
        if first is None:
            return None
        last = next(obs for obs in reversed(self.observations) if theirs(obs))
        return first, last


def vectors_of(observations: list[Observation], *, good_only: bool = False) -> list[FloatArray]:
    """The computed embeddings of ``observations`` (of those that passed the gate)."""
    return [obs.embedding for obs in observations
            if obs.embedding is not None and (obs.good or not good_only)]


def template(vectors: FloatArray | list[FloatArray]) -> FloatArray:
    """The unit mean of a track's embeddings: averaging over frames cancels much of what one
    frame gets wrong (compression, blur, pose), so templates separate people far better than
    single faces do."""
    mean = np.mean(vectors, axis=0)
    unit: FloatArray = (mean / max(float(np.linalg.norm(mean)), 1e-9)).astype(np.float32)
    return unit


BoxLike = FloatArray | tuple[float, float, float, float]
DRIFT_WINDOW = 60  # observations a track's latest faces are compared with, at most
# A seam is looked at until this many good faces follow it (the identity layer's patience):
# by then the faces after it have confirmed the person, or been split off.
SEAM_FACES = 12


def box_iou(a: BoxLike, b: BoxLike) -> float:
    """Intersection over union of two x1, y1, x2, y2 boxes."""
    inter_w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    inter_h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = inter_w * inter_h
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


class Tracker:
    """Links observations into tracks.

    An observation joins an active track when their boxes overlap (IoU >= ``min_iou``), the
    track was seen within ``max_reuse_s`` and the embeddings are within ``link_distance``; or,
    after a longer gap or with little overlap but a nearby box, when the embeddings are within
    ``strict_distance``. A track not seen for ``max_gap_s`` has ended.

    An observation without an embedding can only continue a track it overlaps unambiguously
    (IoU >= ``sure_iou``); :meth:`sure_continuations` says which faces qualify, so that callers
    may skip embedding them.

    A track is kept pure: when its latest good faces (two or more, among the last
    ``drift_faces``) are each farther than ``split_distance`` from the template of its earlier
    ones, someone else has taken the person's place (linked face by face, each step small
    enough); the track is split where they began, and the new part is a track of its own,
    undecided (:attr:`splits` of that update). A face linked after a gap or a jump (a seam)
    is a single face matched against the track's recent faces, close enough for a look-alike
    to pass: once ``drift_faces`` good faces follow it, their template is compared with the
    template of the good faces before it (templates are what tell people apart), and the
    track is split at the seam when the two are farther apart than ``seam_distance``: the
    faces after it are then decided anew, against everyone known, as any new track is.
    """

    def __init__(self, *, link_distance: float, strict_distance: float, max_gap_s: float = 1.5,
                 min_iou: float = 0.2, sure_iou: float = 0.5, max_reuse_s: float = 0.35,
                 split_distance: float = float("inf"), seam_distance: float = float("inf"),
                 drift_faces: int = 3) -> None:
        if max_gap_s <= 0:
            raise ValueError(f"max_gap_s must be positive, got {max_gap_s}")
        if drift_faces < 1:
            raise ValueError(f"drift_faces must be at least 1, got {drift_faces}")
        self.link_distance = link_distance
        self.strict_distance = strict_distance
        self.split_distance = split_distance
        self.seam_distance = seam_distance
        self.drift_faces = drift_faces
        self.splits: list[tuple[Track, Track]] = []  # (track, the part split off) last update
        self.max_gap_s = max_gap_s
        self.min_iou = min_iou
        self.sure_iou = sure_iou
        self.max_reuse_s = max_reuse_s
        self.active: list[Track] = []
        self._next_number = 1

    def update(self, t: float, observations: list[Observation]) -> tuple[list[Track], list[Track]]:
        """Add the observations of one sampled frame at time ``t``.

        Returns the track of each observation (in order) and the tracks that ended before ``t``.
        """
        ended = [track for track in self.active if t - track.last.t > self.max_gap_s]
        self.active = [track for track in self.active if t - track.last.t <= self.max_gap_s]
        candidates: list[tuple[float, int, int, bool]] = []
        for o, obs in enumerate(observations):
            for k, track in enumerate(self.active):
                link = self._link_cost(track, obs)
                if link is not None:
                    candidates.append((link[0], o, k, link[1]))
        assigned: dict[int, Track] = {}
        seams: set[int] = set()
        taken: set[int] = set()
        for _, o, k, seam in sorted(candidates):
            if o not in assigned and k not in taken:
                assigned[o] = self.active[k]
                taken.add(k)
                if seam:
                    seams.add(o)
        result = []
        for o, obs in enumerate(observations):
            if o not in assigned:
                assigned[o] = self._new_track([])
            assigned[o].observations.append(obs)
            if o in seams:
                assigned[o].seams.append(obs)
            result.append(assigned[o])
        self.splits = [(track, split) for obs, track in zip(observations, result, strict=True)
                       if obs.good and obs.embedding is not None
                       and (split := self._split_if_drifted(track)
                            or self._split_at_seam(track)) is not None]
        for _, split in self.splits:
            result = [split if any(obs is moved for moved in split.observations) else track
                      for obs, track in zip(observations, result, strict=True)]
        return result, ended

    def _new_track(self, observations: list[Observation]) -> Track:
        track = Track(self._next_number, observations)
        self._next_number += 1
        self.active.append(track)
        return track

    def _split_if_drifted(self, track: Track) -> Track | None:
        """Split ``track`` where its last good faces stopped looking like the earlier ones: at
        the cut among its last ``drift_faces`` good faces, with ``drift_faces`` before it and
        at least two after it, whose after faces are all farther than ``split_distance`` from
        the template of the faces before it."""
        # The recent past is what the new faces are compared with; a track may last hours.
        good = [obs for obs in track.observations[-DRIFT_WINDOW:]
                if obs.good and obs.embedding is not None]
        k = self.drift_faces
        vectors = vectors_of(good)
        best: tuple[float, int] | None = None
        for cut in range(max(k, len(good) - k), len(good) - 1):
            before = template(vectors[:cut])
            # Every face after the cut must be someone else: one odd face is no change
            nearest = min(float(np.linalg.norm(v - before)) for v in vectors[cut:])
            if nearest > self.split_distance and (best is None or nearest > best[0]):
                best = (nearest, cut)
        if best is None:
            return None
        return self._split_at(track, next(i for i, obs in enumerate(track.observations)
                                          if obs is good[best[1]]))

    def _split_at_seam(self, track: Track) -> Track | None:
        """Split ``track`` at its latest seam whose ``drift_faces`` or more good faces after it
        (up to :data:`SEAM_FACES`) have a template farther than ``seam_distance`` from the
        template of the track's good faces before it; seams followed by more good faces than
        that are settled and forgotten."""
        k = self.drift_faces
        observations = track.observations
        for seam in reversed(list(track.seams)):
            # Seams are recent: look from the end (a track may last hours).
            at = len(observations) - 1 - next(i for i, obs in enumerate(reversed(observations))
                                               if obs is seam)
            after = vectors_of(observations[at:], good_only=True)
            if len(after) > SEAM_FACES:
                track.seams.remove(seam)
                continue
            before = vectors_of(observations[max(0, at - DRIFT_WINDOW):at],
                                good_only=True)
            if (len(after) >= k and len(before) >= k and float(
                    np.linalg.norm(template(after) - template(before))) > self.seam_distance):
                return self._split_at(track, at)
        return None

    def _split_at(self, track: Track, at: int) -> Track:
        """A new track of ``track``'s observations from ``at`` on (with their seams)."""
        moved, track.observations = track.observations[at:], track.observations[:at]
        split = self._new_track(moved)
        split.seams = [seam for seam in track.seams if any(seam is obs for obs in moved)
                       and seam is not moved[0]]
        track.seams = [seam for seam in track.seams if not any(seam is obs for obs in moved)]
        return split

    def sure_continuations(self, t: float, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        """Which of one frame's ``boxes`` continue an identified track so plainly that their
        embedding can be skipped: the box overlaps exactly one such track (and that track no
        other box) by ``sure_iou``, and the track's face was embedded in the last
        ``max_reuse_s``. Identity is never decided on such faces; they only extend a track."""
        sure = np.zeros(len(boxes), np.bool_)
        candidates = [track for track in self.active if track.identity is not None
                      and t - track.embedded[-1].t <= self.max_reuse_s]
        if not candidates or not len(boxes):
            return sure
        overlaps = np.array([[box_iou(box, track.last.box) >= self.sure_iou
                              for track in candidates] for box in boxes])
        for b in range(len(boxes)):
            row = np.flatnonzero(overlaps[b])
            sure[b] = len(row) == 1 and overlaps[:, row[0]].sum() == 1
        return sure

    def finish(self) -> list[Track]:
        """End every active track (end of input) and return them."""
        ended, self.active = self.active, []
        return ended

    def _link_cost(self, track: Track, obs: Observation) -> tuple[float, bool] | None:
        """The cost of ``obs`` joining ``track`` (lower is better) and whether it would join on
        its embedding alone (a seam); ``None`` when it may not join."""
        last = track.last
        iou = box_iou(last.box, obs.box)
        if obs.embedding is None:
            return (-iou, False) if iou >= self.sure_iou and track.identity is not None else None
        distance = float(np.linalg.norm(track.recent_embedding() - obs.embedding))
        # Overlap vouches for the face only from one sampled frame to the next; after a gap,
        # someone else may have stepped into the same place.
        if iou >= self.min_iou and distance <= self.link_distance and (
                obs.t - last.t <= self.max_reuse_s):
            return distance - iou, False
        size = max(last.box[2] - last.box[0], last.box[3] - last.box[1])
        shift = float(np.hypot((obs.box[0] + obs.box[2] - last.box[0] - last.box[2]) / 2,
                               (obs.box[1] + obs.box[3] - last.box[1] - last.box[3]) / 2))
        if shift <= 2.0 * size and distance <= self.strict_distance:
            return distance, True
        return None
