"""The open-set decision: is a track someone known, someone new, or not yet sure?

A track is compared with the gallery through the template of its good faces (their unit mean).
Exemplars are templates too: each identity keeps several, from its tracks and from stretches of
them, so different poses, lights and photos of one person are all represented. The nearest
exemplars of the track's template vote by identity; a known identity needs its nearest exemplar
under the embedder's threshold, the most votes, and a margin over the second-best identity. A
new identity needs enough good faces and a distance clearly over the threshold; anything between
waits for more evidence, until the track has waited long enough or ends, when the threshold
alone decides. Faces short of the quality gate, smaller or softer but still recognisable
(``fair``), never create anyone; a track of enough of them clearly nearer one known person than
the threshold joins that person.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

import numpy as np
import numpy.typing as npt

from stream.errors import GalleryError, StorageError
from stream.identity.consolidate import older_identity
from stream.identity.gallery import Gallery
from stream.identity.track import Observation, Track, Tracker, template
from stream.types import FloatArray, GateMiss

log = logging.getLogger(__name__)


class Verdict(Enum):
    KNOWN = "known"
    NEW = "new"
    WAIT = "wait"


@dataclass(frozen=True)
class Decision:
    verdict: Verdict
    identity: int | None  # for KNOWN
    distance: float  # the track's distance to the best identity (inf when the gallery is empty)
    reason: str = ""  # what decided it, or what it waits for, with the numbers (for --debug)


@dataclass(frozen=True)
class MatchSettings:
    """Thresholds of the open-set decision, in Euclidean distance between unit embeddings."""

    threshold: float  # below: the same person
    uncertain_band: float = 0.06  # threshold .. threshold + band: not sure yet, wait
    margin: float = 0.03  # best identity must beat the second-best by this much
    neighbours: int = 16
    min_evidence: int = 3  # good faces needed before deciding, unless the track has ended
    patience: int = 12  # good faces after which an uncertain track is decided anyway
    # Matches within this of the threshold need more good faces and a wider margin, the closer
    # they are (see :func:`evidence_needed`).
    close_band: float = 0.03
    shrink: float = 0.03  # the threshold falls by this per e-fold of faces (threshold_for)
    min_face_score: float = 0.95  # the quality gate's detection score: a face, surely
    # A track of faces short of the gate (``fair``: smaller, softer) may join a known person
    # with this many of them, their template this much under the threshold (see recall()).
    recall_faces: int = 6
    recall_under: float = 0.06
    exemplar_faces: int = 10  # an identified track adds a template of each this many good faces
    # An identity created here is looked at again (joined to an older one it is, see
    # :mod:`stream.identity.consolidate`) from this many good faces until it has young_faces.
    second_look_faces: int = 24
    young_faces: int = 48

    def __post_init__(self) -> None:
        if not 0 < self.threshold < 2:
            raise ValueError(f"threshold must be in (0, 2), got {self.threshold}")
        if self.min_evidence < 1 or self.patience < self.min_evidence:
            raise ValueError("min_evidence must be >= 1 and patience >= min_evidence, got "
                             f"{self.min_evidence} and {self.patience}")


def candidates(gallery: Gallery, query: FloatArray, k: int, reach: float
               ) -> dict[int, tuple[float, int]]:
    """Identities among the ``k`` exemplars nearest to ``query``: the distance to each one's
    nearest exemplar, and its votes (how many of its exemplars are within ``reach``)."""
    found = gallery.search(query[None], k)
    result: dict[int, tuple[float, int]] = {}
    for distance, identity in zip(found.distances[0], found.identities[0], strict=True):
        if identity < 0:
            continue
        nearest, votes = result.get(int(identity), (float(distance), 0))
        result[int(identity)] = (nearest, votes + (float(distance) <= reach))
    return result


def threshold_for(faces: int, settings: MatchSettings) -> float:
    """The threshold for a template of ``faces`` good faces: ``threshold`` for
    ``min_evidence`` faces, lower for more. Averaging more faces cancels more of each face's
    noise, so templates of one person, and of two similar people, come closer together; a
    fixed threshold would let more look-alikes in the more faces a track has."""
    ratio = max(faces, settings.min_evidence) / settings.min_evidence
    return settings.threshold - settings.shrink * math.log(ratio)


def evidence_needed(distance: float, threshold: float, settings: MatchSettings
                    ) -> tuple[int, float]:
    """Good faces and margin a match at ``distance`` needs: ``min_evidence`` and ``margin`` when
    it is clearly under ``threshold``, rising to ``patience`` faces and twice the margin as it
    nears it (near look-alikes are matched only on much evidence)."""
    near = threshold - settings.close_band
    closeness = min(1.0, max(0.0, (distance - near) / settings.close_band))
    faces = settings.min_evidence + math.ceil(
        closeness * (settings.patience - settings.min_evidence))
    return faces, settings.margin * (1.0 + closeness)


_MISSED = {"score": "under score {limit:.2f} (best {best:.2f})",
           "size": "under {limit:.0f} px (largest {best:.0f})",
           "sharpness": "blurred (sharpness under {limit:.1f}, best {best:.1f})",
           "brightness": "dark (brightness under {limit:.0f}, best {best:.0f})",
           "edge": "cut by the frame's edge"}


def gate_misses(track: Track) -> str:
    """Why the track's faces are not good, most common first: how many missed each limit of
    the gate first, and the best of them ("18 under score 0.95 (best 0.93), 3 under 40 px
    (largest 36)"); empty when every face passed."""
    by_check: dict[str, list[GateMiss]] = {}
    for obs in track.observations:
        if obs.miss is not None:
            by_check.setdefault(obs.miss.check, []).append(obs.miss)
    parts = []
    for check, misses in sorted(by_check.items(), key=lambda item: -len(item[1])):
        best = max(misses, key=lambda miss: miss.value)
        text = _MISSED.get(check, check + " under {limit:.2f} (best {best:.2f})")
        parts.append(f"{len(misses)} " + text.format(limit=best.limit, best=best.value))
    return ", ".join(parts)


def _ranked(gallery: Gallery, query: FloatArray, settings: MatchSettings, threshold: float,
            exclude: set[int]) -> tuple[list[tuple[float, int]], dict[int, tuple[float, int]]]:
    """The identities ``query`` may be, nearest first, and each one's (distance, votes): not
    those in ``exclude``, nor those that rejected a face like it."""
    reach = threshold + settings.uncertain_band
    found = {i: c for i, c in candidates(gallery, query, settings.neighbours, reach).items()
             if i not in exclude and not gallery.rejected(i, query, threshold)}
    return sorted((distance, identity) for identity, (distance, _) in found.items()), found


def decide(gallery: Gallery, track: Track, settings: MatchSettings, *, final: bool,
           exclude: set[int]) -> Decision:
    """The decision for a track not yet assigned. ``final``: the track has ended, decide now.
    ``exclude``: identities on screen at the same time as this track (they cannot be it).

    Only faces the detector is sure of (``min_face_score``) count: a track of anything else
    (hands, a dress) is never decided. Faces short of the gate may still find a known person
    (:func:`recall`)."""
    good = track.embeddings(good_only=True)
    faces = [obs.embedding for obs in track.observations
             if obs.embedding is not None and obs.score >= settings.min_face_score]
    if not len(good) and len(faces) < settings.min_evidence:
        return Decision(Verdict.WAIT, None, float("inf"),
                        f"needs {settings.min_evidence} good faces (has 0)")
    query = template(good if len(good) else np.stack(faces))
    threshold = threshold_for(len(good), settings)
    reach = threshold + settings.uncertain_band
    ranked, found = _ranked(gallery, query, settings, threshold, exclude)
    best_distance, best = ranked[0] if ranked else (float("inf"), None)
    second = ranked[1][0] if len(ranked) > 1 else float("inf")
    most_votes = max((votes for _, votes in found.values()), default=0)
    needed, margin = evidence_needed(best_distance, threshold, settings)
    clear_winner = (best is not None and second - best_distance >= margin
                    and found[best][1] >= most_votes)
    under = best is not None and best_distance < threshold
    name = "nobody" if best is None else Gallery.label(best)
    match = f"{name} at {best_distance:.3f}, under {threshold:.3f} with {len(good)} good faces"
    if under and clear_winner and len(good) >= needed:
        return Decision(Verdict.KNOWN, best, best_distance, match)
    enough = len(good) >= settings.min_evidence
    if enough and best_distance >= reach:
        nearest = (f"nobody within {reach:.3f}" if best is None
                   else f"nearest {name} at {best_distance:.3f}, over {reach:.3f}")
        return Decision(Verdict.NEW, None, best_distance, nearest)
    if final or len(good) >= settings.patience:
        # Out of patience. A known person needs the evidence its closeness asks for, or a
        # clear match (then faces too small or soft to create anyone may still be them).
        # Wrongly merging two people corrupts an identity for good; a split is the lesser error.
        if under and (len(good) >= needed or best_distance < threshold - settings.close_band):
            return Decision(Verdict.KNOWN, best, best_distance, match)
        # Under the threshold here means the track ended short of the faces that closeness
        # asks for (out of patience it has them): it stays undecided, for a new identity that
        # near a known one would split that person's later faces between the two.
        if enough and not under:
            return Decision(Verdict.NEW, None, best_distance, f"nearest {name} at "
                            f"{best_distance:.3f}, not matched")
    recalled = recall(gallery, track, settings, exclude)
    if recalled is not None and recalled.verdict is Verdict.KNOWN:
        return recalled
    if under and not clear_winner:
        runner = ranked[1][1] if len(ranked) > 1 else None
        why = (f"{name} at {best_distance:.3f}, {Gallery.label(runner)} at {second:.3f}: "
               f"needs a margin of {margin:.3f}" if runner is not None and
               second - best_distance < margin else f"{name} at {best_distance:.3f} has fewer "
               "votes than another")
    elif under:
        why = f"{name} at {best_distance:.3f}, needs {needed} good faces (has {len(good)})"
    elif best_distance < reach:
        why = (f"{name} at {best_distance:.3f}, needs under {threshold:.3f} to match, or over "
               f"{reach:.3f} for a new person")
        if not enough:
            why += f" with {settings.min_evidence} good faces (has {len(good)})"
    else:
        why = f"a new person needs {settings.min_evidence} good faces (has {len(good)})"
    if recalled is not None:
        why += f"; {recalled.reason}"
    return Decision(Verdict.WAIT, None, best_distance, why)


def recall(gallery: Gallery, track: Track, settings: MatchSettings, exclude: set[int], *,
           at_least: float = 0.0) -> Decision | None:
    """A known person for a track of faces short of the gate but fit (``fair``: smaller or
    softer, yet recognisable), never a new one: it needs ``recall_faces`` of them, their
    template ``recall_under`` nearer the person than the threshold for that many faces (or
    ``at_least``, when higher), and a clear win over the next person. ``None`` when the track
    has too few such faces; a WAIT saying why when they are not clear enough."""
    fair = [obs.embedding for obs in track.observations
            if obs.fair and obs.embedding is not None]
    if len(fair) < settings.recall_faces:
        return None
    query = template(fair)
    threshold = max(threshold_for(len(fair), settings), at_least)
    bar = threshold - settings.recall_under
    ranked, found = _ranked(gallery, query, settings, threshold, exclude)
    if not ranked:
        return Decision(Verdict.WAIT, None, float("inf"), f"{len(fair)} fair faces, nobody "
                        "near")
    distance, best = ranked[0]
    second = ranked[1][0] if len(ranked) > 1 else float("inf")
    most_votes = max(votes for _, votes in found.values())
    text = f"{len(fair)} fair faces: {Gallery.label(best)} at {distance:.3f}"
    if (distance < bar and second - distance >= 2 * settings.margin
            and found[best][1] >= most_votes):
        return Decision(Verdict.KNOWN, best, distance, f"{text}, under {bar:.3f}")
    return Decision(Verdict.WAIT, None, distance, f"{text}, needs under {bar:.3f} and a "
                    f"margin of {2 * settings.margin:.3f}")


class Identifier:
    """Tracks plus gallery: assigns identities to the faces of each sampled frame, online.

    Feed frames in time order with :meth:`observe`; call :meth:`finish` at the end of input.
    Both return the tracks whose identity was decided by that call, so a caller can label the
    earlier faces of a track retroactively (file reports) or announce it (live events).
    """

    def __init__(self, gallery: Gallery, settings: MatchSettings, *, max_gap_s: float = 1.5,
                 source: str = "", face_of: Callable[[Track], bytes | None] | None = None
                 ) -> None:
        """``source`` (camera or file) is recorded with each exemplar; ``face_of`` gives the
        JPEG of a track's best face, kept with its exemplars for re-embedding."""
        self.gallery = gallery
        self.settings = settings
        self.source = source
        self.face_of = face_of or (lambda track: None)
        # The tracker compares single faces with a track's recent faces: noisier than
        # templates, so its limits sit above the template threshold. A seam (a face joined
        # after a gap on its embedding alone) stands only when the template of the faces
        # after it is clearly the person's (under the threshold less the close band, where
        # a decision needs no extra evidence); otherwise those faces are decided anew.
        self.tracker = Tracker(link_distance=settings.threshold * 1.4,
                               strict_distance=settings.threshold * 1.1, max_gap_s=max_gap_s,
                               split_distance=settings.threshold,
                               seam_distance=settings.threshold - settings.close_band)
        self._pending: dict[int, list[FloatArray]] = {}  # track -> good faces since last exemplar
        self._open: list[Track] = []  # tracks seen recently (ended ones kept for exclusion)
        self._young: set[int] = set()  # identities created here, not yet looked at again
        self._merged: list[tuple[int, int]] = []  # (kept, gone) by the latest observe

    def observe(self, t: float, observations: list[Observation]) -> tuple[list[Track],
                                                                          list[Track]]:
        """Add one sampled frame; returns each observation's track and the tracks decided now."""
        self._merged = []
        tracks, ended = self.tracker.update(t, observations)
        for track, _ in self.tracker.splits:
            self._pending.pop(track.number, None)  # those faces were someone else's
        decided = []
        for track in ended:
            self._pending.pop(track.number, None)
            if track.identity is None and self._settle(track, final=True):
                decided.append(track)
        for track in dict.fromkeys(tracks):
            if track.identity is None:
                if self._settle(track, final=False):
                    decided.append(track)
            elif track.last.good and track.last.embedding is not None:
                pending = self._pending.setdefault(track.number, [])
                pending.append(track.last.embedding)
                if len(pending) >= self.settings.exemplar_faces:
                    self._remember(track, np.stack(pending))
                    pending.clear()
        self._open = [track for track in self._open if t - track.last.t <= 30.0]
        self._open.extend(track for track in tracks if track not in self._open)
        self._second_look({track.identity for track in tracks} & self._young)
        return tracks, decided

    def merged(self) -> list[tuple[int, int]]:
        """The identities the latest :meth:`observe` joined, as (kept, gone): a young identity
        found to be an older one (see :mod:`stream.identity.consolidate`)."""
        return list(self._merged)

    def _second_look(self, young: set[int | None]) -> None:
        """Join each of the ``young`` identities seen now to the older one it is, if any: in
        the gallery, and on every track of it."""
        for identity in sorted(i for i in young if i is not None):
            own = [track for track in self._open if track.identity == identity]
            faces = [vectors for track in own
                     if len(vectors := track.embeddings(good_only=True))]
            count = sum(len(vectors) for vectors in faces)
            if count >= self.settings.young_faces:
                self._young.discard(identity)
            if not self.settings.second_look_faces <= count < self.settings.young_faces:
                continue
            frames = set().union(*(track.frames for track in own))
            together = {track.identity for track in self._open
                        if track.identity is not None and not track.frames.isdisjoint(frames)}
            try:
                found = older_identity(
                    self.gallery, identity, np.concatenate(faces),
                    bar=self.settings.threshold - self.settings.close_band,
                    margin=self.settings.margin, neighbours=self.settings.neighbours,
                    threshold=self.settings.threshold,
                    apart=self.gallery.store.cannot_link(identity) | together,
                    named=lambda one: self.gallery.store.identity(one).name is not None)
                if found is None:
                    continue
                self.gallery.merge(found.keep, found.gone)
            except GalleryError as error:  # unstored, or changed by another: its next face
                log.warning("cannot look at %s again now (%s)", Gallery.label(identity), error)
                continue
            log.info("%s is %s (second look: %d good faces, linkage %.3f)",
                     Gallery.label(found.gone), Gallery.label(found.keep), count, found.linkage)
            self._young.discard(identity)
            for track in [*self._open, *self.tracker.active]:
                if track.identity == found.gone:
                    track.identity = found.keep
            self._merged.append((found.keep, found.gone))

    @property
    def highest(self) -> int:
        """The highest identity number given out so far."""
        return self.gallery.highest

    def active_tracks(self) -> list[Track]:
        """The tracks that may still continue."""
        return self.tracker.active

    def split_tracks(self) -> list[Track]:
        """The tracks split off by the latest :meth:`observe` (see :class:`Tracker`)."""
        return [split for _, split in self.tracker.splits]

    def skippable(self, t: float, boxes: FloatArray) -> npt.NDArray[np.bool_]:
        """Faces at time ``t`` that surely continue an identified track: no embedding needed."""
        return self.tracker.sure_continuations(t, boxes)

    def finish(self) -> list[Track]:
        """End all tracks and decide those still waiting; returns the tracks decided now."""
        self._pending.clear()
        return [track for track in self.tracker.finish()
                if track.identity is None and self._settle(track, final=True)]

    def _settle(self, track: Track, *, final: bool) -> bool:
        frames = track.frames
        exclude = {other.identity for other in self._open
                   if other is not track and other.identity is not None
                   and not frames.isdisjoint(other.frames)}
        decision = decide(self.gallery, track, self.settings, final=final, exclude=exclude)
        faces = len(track.observations)
        # A waiting track is told of at 2, 4, 8, ... faces: a few lines however long it waits.
        if decision.verdict is not Verdict.WAIT or final or (
                faces >= self.settings.min_evidence and faces & (faces - 1) == 0):
            misses = gate_misses(track)
            log.debug("track %d at %.2f s (%d faces, %d good%s): %s: %s", track.number,
                      track.observations[0].t, faces, sum(obs.good for obs in track.observations),
                      f": {misses}" if misses else "", decision.verdict.value, decision.reason)
        good = track.embeddings(good_only=True)
        if decision.verdict is Verdict.KNOWN:
            assert decision.identity is not None
            track.identity, track.distance = decision.identity, decision.distance
            if len(good):
                self._remember(track, good)
            self._keep_apart(decision.identity, exclude)
            return True
        if decision.verdict is Verdict.NEW:
            try:
                track.identity = self.gallery.create(
                    template(good)[None], quality=self._quality(track), source=self.source,
                    face=self.face_of(track), join_within=self.settings.threshold)
                track.distance = self.gallery.joined  # None: this decision created them
                if track.distance is None:
                    self._young.add(track.identity)
            except StorageError as error:  # decided again on its next face, or at its end
                log.warning("cannot create a person now (%s); track %d waits", error,
                            track.number)
                return False
            self._keep_apart(track.identity, exclude)
            return True
        return False

    def _keep_apart(self, identity: int, others: set[int]) -> None:
        """Record in the gallery that ``identity`` was on screen together with ``others`` (the
        identities its decision excluded): cannot-link pairs, never to be merged."""
        try:
            for other in others - {identity}:
                self.gallery.store.add_cannot_link(identity, other)
        except StorageError as error:  # the matcher still excludes them while both are here
            log.warning("cannot record now that %s is not %s (%s)", Gallery.label(identity),
                        Gallery.label(other), error)

    def _remember(self, track: Track, vectors: FloatArray) -> None:
        """Add the template of ``vectors`` (good faces of ``track``) to its identity; when the
        store cannot take it now, the identity keeps the exemplars it has."""
        assert track.identity is not None
        try:
            self.gallery.add_exemplars(track.identity, template(vectors)[None],
                                       quality=self._quality(track), source=self.source,
                                       face=self.face_of(track))
        except StorageError as error:
            log.warning("cannot add an exemplar to p%d now (%s)", track.identity, error)

    @staticmethod
    def _quality(track: Track) -> float:
        good = [obs.quality for obs in track.observations if obs.good]
        return float(np.mean(good)) if good else 0.0


__all__ = ["Decision", "Identifier", "MatchSettings", "Verdict", "candidates", "decide",
           "evidence_needed", "gate_misses", "recall", "template", "threshold_for"]
