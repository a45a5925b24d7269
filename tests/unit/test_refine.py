"""File mode's second look: identities of one person joined once the whole video is seen, never
two people (seen together, remembered apart, a look-alike between, known before)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from stream.identity.gallery import Gallery
from stream.identity.matcher import MatchSettings, threshold_for
from stream.identity.refine import refine
from stream.identity.track import Observation, Track
from stream.pipeline.refine import refine_video
from stream.storage import open_store
from stream.types import PersonLeft

DIM = 8
SETTINGS = MatchSettings(threshold=0.5, close_band=0.03)  # a clear match: under 0.47


def at(distance: float, turn: int = 1) -> np.ndarray:
    """The unit vector ``distance`` away from the first axis, towards axis ``turn`` (away from
    it when negative)."""
    angle = 2 * math.asin(distance / 2)
    vector = np.zeros(DIM, np.float32)
    vector[0], vector[turn] = math.cos(angle), math.sin(angle)
    return vector


def track(number: int, identity: int | None, vector: np.ndarray, frames: range) -> Track:
    return Track(number, [Observation(f, f / 10, np.zeros(4, np.float32), 0.99, vector, 1.0,
                                      True) for f in frames], identity)


def joins(tracks: list[Track], *, existing: set[int] | None = None,
          apart: dict[int, set[int]] | None = None) -> list[tuple[int, int]]:
    found = refine(tracks, SETTINGS, existing=lambda i: i in (existing or set()),
                   cannot_link=lambda i: frozenset((apart or {}).get(i, set())))
    return [(join.gone, join.keep) for join in found]


def test_two_identities_of_one_person_are_joined_into_the_older() -> None:
    found = refine([track(1, 1, at(0.0), range(0, 10)), track(2, 2, at(0.3), range(20, 30))],
                   SETTINGS, existing=lambda i: False, cannot_link=lambda i: frozenset())
    assert [(join.gone, join.keep) for join in found] == [(2, 1)]
    assert found[0].linkage == pytest.approx(0.3, abs=1e-5)


def test_people_seen_together_or_remembered_apart_are_never_joined() -> None:
    one, other = track(1, 1, at(0.0), range(0, 10)), track(2, 2, at(0.1), range(20, 30))
    assert joins([one, other], apart={1: {2}, 2: {1}}) == []
    together = track(2, 2, at(0.1), range(5, 15))  # frames 5-9 with track 1
    assert joins([one, together]) == []
    assert joins([one, other]) == [(2, 1)]


def test_a_close_call_stays_a_split() -> None:
    one, other = track(1, 1, at(0.0), range(0, 10)), track(2, 2, at(0.48), range(20, 30))
    assert joins([one, other]) == []


def test_a_look_alike_between_leaves_them_apart() -> None:
    middle = track(1, 1, at(0.0), range(0, 10))
    side = track(2, 2, at(0.3), range(20, 30))
    close_other_side = track(3, 3, at(-0.31), range(40, 50))  # 0.6 from side: not them
    assert joins([middle, side, close_other_side]) == []
    far_other_side = track(3, 3, at(-0.45), range(40, 50))
    assert joins([middle, side, far_other_side]) == [(2, 1)]


def test_one_person_split_three_ways_is_joined_into_one() -> None:
    parts = [track(1, 1, at(0.0), range(0, 10)), track(2, 2, at(0.1, turn=1), range(20, 30)),
             track(3, 3, at(0.1, turn=2), range(40, 50))]
    assert sorted(joins(parts)) == [(2, 1), (3, 1)]


def test_a_person_whose_visits_agree_closely_takes_in_only_what_is_as_close() -> None:
    newcomer = track(3, 3, at(0.3), range(40, 50))
    tight = [track(1, 1, at(0.0, turn=2), range(0, 10)),
             track(2, 1, at(0.1, turn=2), range(20, 30))]  # spread 0.1: bar 0.15
    assert joins([*tight, newcomer]) == []
    loose = [track(1, 1, at(0.0, turn=2), range(0, 10)),
             track(2, 1, at(0.35, turn=2), range(20, 30))]  # spread 0.35: bar 0.47
    assert joins([*loose, newcomer]) == [(3, 1)]


def test_people_known_before_the_video_need_the_online_threshold_and_stay_apart() -> None:
    online = threshold_for(10, SETTINGS)
    assert online < 0.467 < SETTINGS.threshold - SETTINGS.close_band
    known, new = track(1, 1, at(0.0), range(0, 10)), track(2, 2, at(0.467), range(20, 30))
    assert joins([known, new]) == [(2, 1)]
    assert joins([known, new], existing={1}) == []
    near_new = track(2, 2, at(0.2), range(20, 30))
    assert joins([known, near_new], existing={1}) == [(2, 1)]
    assert joins([known, near_new], existing={1, 2}) == []


def left(person: str, start: float, end: float, quality: float) -> PersonLeft:
    return PersonLeft(camera="file", person=person, name=None, appearance=f"file-{person}",
                      start=100 + start, end=100 + end, duration_s=end - start,
                      start_frame_time=start, end_frame_time=end,
                      thumbnail=np.full((4, 4, 3), int(quality * 100), np.uint8),
                      quality=quality, distance=None, confidence=None, time=200.0)


def test_the_video_is_told_again_under_the_kept_identity() -> None:
    gallery = Gallery(open_store(None, embedder="test", version="1", dim=DIM))
    earlier = gallery.create(at(1.0, 4)[None])  # someone's before the video
    ada, again, bob = (gallery.create(vector[None]) for vector in (at(0.0), at(0.2),
                                                                   at(1.2, 5)))
    tracks = [track(1, ada, at(0.0), range(0, 10)), track(2, again, at(0.2), range(11, 20)),
              track(3, bob, at(1.2, 5), range(0, 20)), track(4, None, at(0.0), range(30, 31))]
    gallery.store.rename(ada, "Ada")
    events = [left("p2", 0.0, 0.9, 0.5), left("p3", 1.1, 1.9, 0.8), left("p4", 0.0, 1.9, 0.7),
              left("p3", 3.5, 4.0, 0.6)]
    told = refine_video(gallery, tracks, events, SETTINGS, existing_up_to=earlier,
                        left_after_s=1.5)
    assert again not in gallery and len(gallery.store.exemplars(ada)) == 2
    assert [t.identity for t in tracks] == [ada, ada, bob, None]
    assert [(e.person, e.start_frame_time, e.end_frame_time, e.quality) for e in told] == [
        ("p2", 0.0, 1.9, 0.8), ("p4", 0.0, 1.9, 0.7), ("p2", 3.5, 4.0, 0.6)]  # 1.6 s later
    assert told[2].name == "Ada" and told[1].name is None
    assert told[0].thumbnail[0, 0, 0] == 80 and told[0].duration_s == pytest.approx(1.9)
    assert refine_video(gallery, tracks[2:], events[2:], SETTINGS, existing_up_to=earlier,
                        left_after_s=1.5) == events[2:]
