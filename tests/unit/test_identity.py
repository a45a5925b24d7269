"""Tracks, gallery and the open-set decision on plain vectors."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from stream.identity.gallery import Gallery
from stream.identity.matcher import (
    Identifier,
    MatchSettings,
    Verdict,
    decide,
    evidence_needed,
    gate_misses,
    threshold_for,
)
from stream.identity.track import Observation, Track, Tracker, box_iou
from stream.storage import open_store
from stream.types import GateMiss

DIM = 16
RNG = np.random.default_rng(7)


def unit(v: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return normalised.astype(np.float32)


CENTRES = unit(RNG.normal(size=(4, DIM)))  # four well-separated people


def in_memory(max_exemplars: int = 24) -> Gallery:
    """An empty gallery in memory."""
    return Gallery(open_store(None, embedder="test", version="1", dim=DIM),
                   max_exemplars=max_exemplars)


def near(person: int, spread: float = 0.05) -> np.ndarray:
    """A face of ``person``: its centre plus a little noise."""
    return unit(CENTRES[person] + RNG.normal(size=DIM) * spread / np.sqrt(DIM))


def away_from_person_0(distance: float) -> np.ndarray:
    """A face exactly ``distance`` from person 0's centre, in a random direction."""
    other = RNG.normal(size=DIM)
    direction = unit(other - CENTRES[0] * (other @ CENTRES[0]))
    angle = 2 * np.arcsin(distance / 2)
    return unit(CENTRES[0] * np.cos(angle) + direction * np.sin(angle))


def obs(frame: int, box: tuple[float, float, float, float], embedding: np.ndarray,
        good: bool = True) -> Observation:
    return Observation(frame, frame / 10, np.array(box, np.float32), 0.99, embedding, 1.0, good)


def track_of(person: int, count: int, good: bool = True) -> Track:
    return Track(1, [obs(i, (0, 0, 50, 50), near(person), good) for i in range(count)])


def test_box_iou() -> None:
    a = np.array([0, 0, 10, 10], np.float32)
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([5, 0, 15, 10], np.float32)) == pytest.approx(1 / 3)
    assert box_iou(a, np.array([20, 20, 30, 30], np.float32)) == 0.0


def test_gallery_allocates_ids_per_instance_and_skips_near_duplicates() -> None:
    first, second = in_memory(), in_memory()
    one = first.create(np.stack([near(0), near(0, 0.001)]))
    assert one == 1 and second.create(np.stack([near(1)])) == 1
    assert first.exemplar_count(one) == 1  # the second vector was a near-duplicate
    assert first.add_exemplars(one, np.stack([near(0, 0.6)])) == 1
    assert Gallery.label(one) == "p1"
    found = first.search(np.stack([near(0)]), 4)
    assert list(found.identities[0][:2]) == [1, 1] and found.identities[0][2] == -1
    assert np.isinf(found.distances[0][2])


def test_gallery_refuses_vectors_of_another_size() -> None:
    with pytest.raises(ValueError, match="dimension 16"):
        in_memory().create(np.zeros((1, 8), np.float32))


def test_gallery_bounds_exemplars() -> None:
    gallery = in_memory(max_exemplars=3)
    person = gallery.create(np.stack([near(0, 0.8) for _ in range(10)]))
    assert gallery.exemplar_count(person) == 3


SETTINGS = MatchSettings(threshold=0.5, min_evidence=3, patience=8)


def test_decide_known_new_and_wait() -> None:
    gallery = in_memory()
    gallery.create(np.stack([near(0) for _ in range(3)]))
    known = decide(gallery, track_of(0, 3), SETTINGS, final=False, exclude=set())
    assert known.verdict is Verdict.KNOWN and known.identity == 1
    new = decide(gallery, track_of(1, 3), SETTINGS, final=False, exclude=set())
    assert new.verdict is Verdict.NEW
    early = decide(gallery, track_of(1, 2), SETTINGS, final=False, exclude=set())
    assert early.verdict is Verdict.WAIT  # two faces are not enough for a new identity
    blurry = decide(gallery, track_of(1, 5, good=False), SETTINGS, final=True, exclude=set())
    assert blurry.verdict is Verdict.WAIT  # never creates from faces that failed the gate


def test_decide_excludes_people_on_screen_at_the_same_time() -> None:
    gallery = in_memory()
    gallery.create(np.stack([near(0)]))
    decision = decide(gallery, track_of(0, 3), SETTINGS, final=False, exclude={1})
    assert decision.verdict is Verdict.NEW


def test_decide_waits_in_the_uncertain_band_then_settles() -> None:
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    # faces at distance 0.525 from person 1: between threshold 0.5 and 0.5 + band 0.06
    face = away_from_person_0(0.525)
    track = Track(1, [obs(i, (0, 0, 50, 50), face) for i in range(3)])
    assert decide(gallery, track, SETTINGS, final=False, exclude=set()).verdict is Verdict.WAIT
    final = decide(gallery, track, SETTINGS, final=True, exclude=set())
    assert final.verdict is Verdict.NEW  # out of patience, 0.525 is over the threshold


def test_a_track_that_ended_close_to_someone_on_too_few_faces_stays_undecided() -> None:
    """Three good faces 0.48 from person 1 (under the threshold 0.5, but that close a match
    needs more faces): when the track ends it is neither person 1 nor someone new, whose
    identity that near person 1 would split their later faces between the two."""
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    face = away_from_person_0(0.48)
    short = Track(1, [obs(i, (0, 0, 50, 50), face) for i in range(3)])
    assert evidence_needed(0.48, SETTINGS.threshold, SETTINGS)[0] > 3
    ended = decide(gallery, short, SETTINGS, final=True, exclude=set())
    assert ended.verdict is Verdict.WAIT and "needs" in ended.reason
    # Out of patience it is decided: over the threshold for that many faces (0.471), new.
    patient = Track(1, [obs(i, (0, 0, 50, 50), face) for i in range(SETTINGS.patience)])
    assert threshold_for(SETTINGS.patience, SETTINGS) < 0.48
    assert decide(gallery, patient, SETTINGS, final=True, exclude=set()).verdict is Verdict.NEW


def test_tracker_links_by_overlap_and_embedding() -> None:
    tracker = Tracker(link_distance=0.6, strict_distance=0.5, max_gap_s=0.5)
    first, _ = tracker.update(0.0, [obs(0, (0, 0, 50, 50), near(0)),
                                    obs(0, (200, 0, 250, 50), near(1))])
    moved, _ = tracker.update(0.1, [obs(1, (205, 2, 255, 52), near(1)),
                                    obs(1, (4, 0, 54, 50), near(0))])
    assert moved[0] is first[1] and moved[1] is first[0]
    # same place, different person: a new track, not a switch
    swapped, _ = tracker.update(0.2, [obs(2, (4, 0, 54, 50), near(2))])
    assert swapped[0] is not first[0]
    _, ended = tracker.update(1.0, [])
    assert len(ended) == 3 and not tracker.active


def test_identifier_keeps_one_id_across_an_absence_and_separates_people() -> None:
    identifier = Identifier(in_memory(), SETTINGS, max_gap_s=0.5)
    labels: dict[int, set[int | None]] = {0: set(), 1: set()}
    frame = 0
    for _ in range(10):  # both on screen
        tracks, _ = identifier.observe(frame / 10, [obs(frame, (0, 0, 50, 50), near(0)),
                                                    obs(frame, (200, 0, 250, 50), near(1))])
        frame += 1
    for _ in range(20):  # person 0 leaves; comes back elsewhere after 2 s
        identifier.observe(frame / 10, [])
        frame += 1
    back = []
    for _ in range(5):
        tracks, _ = identifier.observe(frame / 10, [obs(frame, (400, 100, 450, 150), near(0))])
        back.extend(tracks)
        frame += 1
    identifier.finish()
    first = {t.identity for t in identifier.tracker.active}
    assert not first  # all ended
    labels[0] = {t.identity for t in back}
    assert labels[0] == {1}
    assert len(identifier.gallery) == 2


def test_people_on_screen_together_are_remembered_as_two_and_others_are_not() -> None:
    gallery = in_memory()
    identifier = Identifier(gallery, SETTINGS, max_gap_s=0.5)
    for frame in range(30):  # 0 all along, 1 beside them from frame 10
        faces = [obs(frame, (0, 0, 50, 50), near(0))]
        if frame >= 10:
            faces.append(obs(frame, (200, 0, 250, 50), near(1)))
        identifier.observe(frame / 10, faces)
    for frame in range(40, 50):  # 2 once they have gone
        identifier.observe(frame / 10, [obs(frame, (400, 0, 450, 50), near(2))])
    identifier.finish()
    assert len(gallery) == 3
    assert gallery.store.cannot_link(1) == {2} and gallery.store.cannot_link(2) == {1}
    assert gallery.store.cannot_link(3) == frozenset()


def test_sure_continuations_skip_only_unambiguous_identified_faces() -> None:
    tracker = Tracker(link_distance=0.6, strict_distance=0.5, max_gap_s=1.0, max_reuse_s=0.35)
    tracks, _ = tracker.update(0.0, [obs(0, (0, 0, 50, 50), near(0)),
                                     obs(0, (200, 0, 250, 50), near(1))])
    boxes = np.array([[2, 0, 52, 50], [202, 0, 252, 50], [400, 0, 450, 50]], np.float32)
    assert not tracker.sure_continuations(0.1, boxes).any()  # nobody identified yet
    tracks[0].identity = 1
    assert tracker.sure_continuations(0.1, boxes).tolist() == [True, False, False]
    crowded = np.array([[2, 0, 52, 50], [5, 0, 55, 50]], np.float32)
    assert not tracker.sure_continuations(0.1, crowded).any()  # two faces on one track
    assert not tracker.sure_continuations(0.5, boxes).any()  # its embedding is too old
    skipped = Observation(1, 0.1, boxes[0], 0.99, None, 0.5, False)
    linked, _ = tracker.update(0.1, [skipped])
    assert linked[0] is tracks[0] and tracks[0].recent_embedding().shape == (DIM,)


def test_after_a_gap_only_a_close_embedding_continues_a_track() -> None:
    tracker = Tracker(link_distance=0.9, strict_distance=0.2, max_gap_s=1.5, max_reuse_s=0.35)
    first, _ = tracker.update(0.0, [obs(0, (0, 0, 50, 50), near(0))])
    # same place, a face 0.5 away: linked next frame, not after a one-second gap
    other = unit(CENTRES[0] + 0.6 * CENTRES[1])
    assert tracker.update(0.1, [obs(1, (0, 0, 50, 50), other)])[0][0] is first[0]
    later, _ = tracker.update(1.1, [obs(11, (0, 0, 50, 50), near(2))])
    assert later[0] is not first[0]


def test_someone_taking_a_persons_place_is_split_off_their_track() -> None:
    # Link distances loose enough that person 1's faces join person 0's track one by one.
    tracker = Tracker(link_distance=2.0, strict_distance=2.0, max_gap_s=1.0,
                      split_distance=0.3, drift_faces=3)
    box = (0, 0, 50, 50)
    first = [tracker.update(i / 10, [obs(i, box, near(0))])[0][0] for i in range(5)]
    assert all(track is first[0] for track in first) and not tracker.splits
    later = [tracker.update(i / 10, [obs(i, box, near(1))])[0][0] for i in range(5, 8)]
    assert later[-1] is not first[0]  # split at the third face of person 1
    assert [o.frame for o in first[0].observations] == [0, 1, 2, 3, 4]
    assert [o.frame for o in later[-1].observations] == [5, 6, 7]
    assert later[-1].identity is None


def test_a_look_alike_who_returns_to_the_place_after_a_gap_is_split_at_the_gap() -> None:
    # Single faces of the look-alike are from 0.26 to 0.46 from person 0 (so one of them is
    # always within split_distance: face by face they pass), their template 0.36 (beyond it).
    tracker = Tracker(link_distance=0.6, strict_distance=0.5, max_gap_s=1.5, max_reuse_s=0.35,
                      split_distance=0.3, seam_distance=0.3, drift_faces=3)
    box = (0, 0, 50, 50)
    first = [tracker.update(i / 10, [obs(i, box, CENTRES[0])])[0][0] for i in range(10)]
    direction = away_from_person_0(0.46) - CENTRES[0]
    look_alike = [unit(CENTRES[0] + direction * k) for k in (1.0, 0.56, 0.78)]
    later = [tracker.update(2.0 + i / 10, [obs(20 + i, box, face)])[0][0]
             for i, face in enumerate(look_alike)]
    assert later[0] is first[0] and later[1] is first[0]  # linked after the gap
    assert later[2] is not first[0] and later[2].identity is None  # split at the third face
    assert [o.frame for o in first[0].observations] == list(range(10))
    assert [o.frame for o in later[2].observations] == [20, 21, 22]
    assert tracker.splits == [(first[0], later[2])]


def test_the_same_person_after_a_gap_stays_one_track() -> None:
    tracker = Tracker(link_distance=0.6, strict_distance=0.5, max_gap_s=1.5, max_reuse_s=0.35,
                      split_distance=0.3, seam_distance=0.3, drift_faces=3)
    box = (0, 0, 50, 50)
    tracks = [tracker.update(i / 10, [obs(i, box, near(0, spread=0.15))])[0][0]
              for i in [*range(10), *range(20, 25)]]  # a second's gap
    assert [seam.frame for seam in tracks[0].seams] == [20]  # joined on its embedding there
    tracks += [tracker.update(i / 10, [obs(i, box, near(0, spread=0.15))])[0][0]
               for i in range(25, 40)]
    assert all(track is tracks[0] for track in tracks) and not tracker.splits
    assert tracks[0].seams == []  # settled after twelve good faces


def test_one_persons_faces_are_never_split() -> None:
    tracker = Tracker(link_distance=2.0, strict_distance=2.0, max_gap_s=1.0,
                      split_distance=0.3, drift_faces=3)
    tracks = [tracker.update(i / 10, [obs(i, (0, 0, 50, 50), near(0))])[0][0]
              for i in range(30)]
    assert all(track is tracks[0] for track in tracks)


def test_a_close_match_needs_more_faces_the_closer_it_is() -> None:
    settings = MatchSettings(threshold=0.5, min_evidence=3, patience=12, close_band=0.05)
    assert evidence_needed(0.40, 0.5, settings) == (3, settings.margin)
    faces, margin = evidence_needed(0.49, 0.5, settings)
    assert faces > 10 and margin > 1.5 * settings.margin
    assert evidence_needed(0.475, 0.5, settings)[0] < faces


def test_templates_of_more_faces_have_a_lower_threshold() -> None:
    settings = MatchSettings(threshold=0.5, min_evidence=3, shrink=0.03)
    assert threshold_for(1, settings) == threshold_for(3, settings) == 0.5
    assert threshold_for(12, settings) == pytest.approx(0.5 - 0.03 * np.log(4))


def test_a_track_of_things_the_detector_is_unsure_of_is_never_decided() -> None:
    gallery = in_memory()
    gallery.create(np.stack([near(0)]))
    unsure = Track(1, [Observation(i, i / 10, np.array((0, 0, 50, 50), np.float32), 0.8,
                                   near(0), 1.0, False) for i in range(10)])
    assert decide(gallery, unsure, SETTINGS, final=True, exclude=set()).verdict is Verdict.WAIT
    sure = Track(2, [Observation(i, i / 10, np.array((0, 0, 50, 50), np.float32), 0.99,
                                 near(0), 1.0, False) for i in range(10)])
    known = decide(gallery, sure, SETTINGS, final=True, exclude=set())
    assert known.verdict is Verdict.KNOWN  # small or soft faces may still be someone known


def away(person: int, distance: float) -> np.ndarray:
    """A face ``distance`` from ``person``'s centre, in a random direction."""
    other = RNG.normal(size=DIM)
    direction = unit(other - CENTRES[person] * (other @ CENTRES[person]))
    angle = 2 * np.arcsin(distance / 2)
    return unit(CENTRES[person] * np.cos(angle) + direction * np.sin(angle))


def fair_track(faces: list[np.ndarray], number: int = 1) -> Track:
    """Faces short of the gate (too small, say) but fit to join a known person."""
    return Track(number, [Observation(i, i / 10, np.array((0, 0, 30, 30), np.float32), 0.99,
                                      face, 0.5, False, fair=True,
                                      miss=GateMiss("size", 30.0, 40.0))
                          for i, face in enumerate(faces)])


def test_small_faces_join_a_known_person_early_but_never_create_one() -> None:
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    # 0.3 from person 1: under the bar for 6 fair faces (0.5 - 0.03 ln 2 - 0.06 = 0.419)
    close = [away(0, 0.3)] * 6
    five = decide(gallery, fair_track(close[:5]), SETTINGS, final=False, exclude=set())
    assert five.verdict is Verdict.WAIT
    known = decide(gallery, fair_track(close), SETTINGS, final=False, exclude=set())
    assert known.verdict is Verdict.KNOWN and known.identity == 1
    assert known.reason == "6 fair faces: p1 at 0.300, under 0.419"
    assert decide(gallery, fair_track(close), SETTINGS, final=False,
                  exclude={1}).verdict is Verdict.WAIT  # p1 is on screen elsewhere
    stranger = [near(2)] * 12
    for final in (False, True):
        decision = decide(gallery, fair_track(stranger), SETTINGS, final=final, exclude=set())
        assert decision.verdict is Verdict.WAIT  # nobody is created from them


def test_small_faces_near_the_threshold_wait() -> None:
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    track = fair_track([away(0, 0.45)] * 8)  # under the threshold, not clearly
    decision = decide(gallery, track, SETTINGS, final=False, exclude=set())
    assert decision.verdict is Verdict.WAIT
    assert decision.reason.endswith("8 fair faces: p1 at 0.450, needs under 0.411 and a "
                                    "margin of 0.060")


def test_a_waiting_track_says_which_gate_its_faces_failed_and_what_the_match_needs(
        caplog: pytest.LogCaptureFixture) -> None:
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    identifier = Identifier(gallery, SETTINGS, max_gap_s=0.5)
    face = away(0, 0.49)  # under the threshold, so close that it needs 7 good faces
    misses = [GateMiss("score", 0.93, 0.95), GateMiss("score", 0.9, 0.95),
              GateMiss("size", 36.0, 40.0), None, None, None]
    caplog.set_level(logging.DEBUG, logger="stream.identity.matcher")
    for i, miss in enumerate(misses):
        identifier.observe(i / 10, [Observation(i, i / 10, np.array((0, 0, 50, 50), np.float32),
                                                0.99, face, 1.0, miss is None, miss=miss)])
    lines = [record.getMessage() for record in caplog.records]
    assert lines == [
        "track 1 at 0.00 s (4 faces, 1 good: 2 under score 0.95 (best 0.93), 1 under 40 px "
        "(largest 36)): wait: p1 at 0.490, needs 7 good faces (has 1)"]
    assert not any("None" in line for line in lines)


def test_gate_misses_of_a_track_of_good_faces_say_nothing() -> None:
    assert gate_misses(track_of(0, 3)) == ""


def test_a_track_in_the_uncertain_band_says_what_either_decision_needs() -> None:
    gallery = in_memory()
    gallery.create(np.stack([CENTRES[0]]))
    face = away(0, 0.525)
    track = Track(1, [obs(i, (0, 0, 50, 50), face) for i in range(3)])
    assert decide(gallery, track, SETTINGS, final=False, exclude=set()).reason == (
        "p1 at 0.525, needs under 0.500 to match, or over 0.560 for a new person")
    assert decide(gallery, Track(2, track.observations[:2]), SETTINGS, final=False,
                  exclude=set()).reason == ("p1 at 0.525, needs under 0.500 to match, or over "
                                            "0.560 for a new person with 3 good faces (has 2)")


def test_faces_cut_by_the_frame_edge_are_named_as_such() -> None:
    track = track_of(0, 3)
    cut = [Observation(3 + i, 0.3 + i / 10, np.array((-6, 0, 44, 50), np.float32), 0.99,
                       away(0, 0.1), 1.0, False, fair=True, miss=GateMiss("edge", -6.0, 0.0))
           for i in range(2)]
    track.observations += cut
    assert gate_misses(track) == "2 cut by the frame's edge"


def test_a_gallery_search_leaves_torch_its_threads() -> None:
    """FAISS searches on one OpenMP thread, and FAISS and torch share that runtime: the
    gallery must put the calling thread's count back, or the models run on one core."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        gallery = in_memory()
        gallery.create(np.stack([near(0)]))
        found = gallery.search(np.stack([near(0)]), 2)
        assert found.identities[0][0] == 1
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
