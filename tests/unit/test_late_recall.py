"""Late recall on plain data: a track that ended undecided (faces too small to create anyone)
is labelled once its person is created, never with someone it was on screen with."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from stream.config import EventSettings
from stream.identity.track import Track
from stream.pipeline.appearances import Appearances, Sighting
from stream.pipeline.lane import Lane, identifying_lane
from stream.storage import open_gallery
from stream.types import Event, Faces, Frame, PersonAppeared, PersonLeft
from stream.vision.executor import FrameFaces
from tests.fixtures.people import People

DIM = 16
PEOPLE = People(seed=5, dim=DIM)
IMAGE = np.zeros((120, 320, 3), np.uint8)
face = PEOPLE.face


def result(index: int, people: Sequence[tuple[int, bool] | None]) -> FrameFaces:
    """Frame ``index`` (10 a second) with a face per (person, good) side by side, ``None``
    where there is none; a face that is not good is fair (small, yet recognisable); the
    detector is sure of all of them."""
    here = [(k, seen) for k, seen in enumerate(people) if seen is not None]
    n = len(here)
    boxes = np.array([[40 + 150 * k, 30, 90 + 150 * k, 90] for k, _ in here],
                     np.float32).reshape(n, 4)
    scores = np.full(n, 0.99, np.float32)
    vectors = (np.stack([face(seen[0]) for _, seen in here]) if n
               else np.zeros((0, DIM), np.float32))
    good = np.array([seen[1] for _, seen in here], np.bool_)
    return FrameFaces(Frame(index, index / 10, IMAGE), Faces(boxes, scores,
                                                             np.zeros((n, 5, 2), np.float32)),
                      vectors, np.ones(n, np.bool_), np.full(n, 10, np.float32),
                      np.full(n, 100, np.float32), good, np.ones(n, np.float32),
                      np.ones(n, np.bool_), (None,) * n)


def lane(*, left_after_s: float = 1.0, recall_within_s: float = 30.0) -> Lane:
    gallery = open_gallery(None, dim=DIM, embedder="test", version="1")
    door = identifying_lane("door", gallery, threshold=0.5, source="test",
                            events=EventSettings(left_after_s=left_after_s))
    door.recall_within_s = recall_within_s
    return door


def play(door: Lane, frames: Sequence[Sequence[tuple[int, bool] | None]]
         ) -> tuple[list[Event], dict[int, int | None]]:
    """Events, and each track's identity as the video ended."""
    events: list[Event] = []
    tracks: dict[int, Track] = {}
    for i, people in enumerate(frames):
        step = door.take(result(i, people), now=float(i))
        events += step.events
        tracks.update((track.number, track) for track in step.tracks)
    events += door.finish(now=float(len(frames)))
    return events, {number: track.identity for number, track in tracks.items()}


def test_an_early_small_track_is_labelled_once_its_person_is_created() -> None:
    # 1 s of small faces, 3 s away, then 2 s of good ones: the person is created at 4 s.
    frames = [[(0, False)]] * 10 + [[]] * 30 + [[(0, True)]] * 20
    events, identities = play(lane(), frames)
    assert set(identities.values()) == {1}  # the small faces count for the person
    appeared = [e for e in events if isinstance(e, PersonAppeared)]
    left = sorted((e for e in events if isinstance(e, PersonLeft)),
                  key=lambda e: e.start_frame_time)
    # Two appearances (the absence is longer than left_after_s); the early one is told late
    # but says when the person was first seen.
    assert [(e.start_frame_time, e.end_frame_time) for e in left] == [(0.0, 0.9), (4.0, 5.9)]
    late = [e for e in appeared if e.frame_time == 0.0]
    assert len(appeared) == 2 and len(late) == 1 and late[0].time > 4.0
    assert late[0].box == (40.0, 30.0, 90.0, 90.0) and not late[0].new


def test_a_short_absence_back_dates_the_open_appearance() -> None:
    frames = [[(0, False)]] * 10 + [[]] * 20 + [[(0, True)]] * 20
    events, identities = play(lane(left_after_s=3.0), frames)
    assert set(identities.values()) == {1}
    left = [e for e in events if isinstance(e, PersonLeft)]
    assert [(e.start_frame_time, e.end_frame_time) for e in left] == [(0.0, 4.9)]
    assert len([e for e in events if isinstance(e, PersonAppeared)]) == 1


def test_never_recalled_into_someone_on_screen_with_it() -> None:
    # Small faces of person 0 beside good ones of person 1 (created at once); they look like
    # person 0, who is created later: only they may be its person.
    lookalike = [[(1, True), (0, False)]] * 10 + [[]] * 30 + [[(0, True)]] * 20
    _, identities = play(lane(), lookalike)
    assert sorted(identities.values(), key=str) == [1, 2, 2]
    # The same small faces look like person 1, beside them: nobody they may be.
    beside = [[(1, True), (1, False)]] * 10 + [[]] * 30
    _, identities = play(lane(), beside)
    assert sorted(identities.values(), key=str) == [1, None]
    # Nor when they go on after person 1 has gone, and person 1 comes back after they ended.
    after: list[list[tuple[int, bool] | None]] = [[(1, True), (1, False)]] * 10
    after += [[None, (1, False)]] * 20 + [[]] * 20 + [[(1, True)]] * 20
    _, identities = play(lane(), after)
    assert sorted(identities.values(), key=str) == [1, 1, None]


def test_an_ended_track_is_kept_only_recall_within_s() -> None:
    frames = [[(0, False)]] * 10 + [[]] * 30 + [[(0, True)]] * 20
    events, identities = play(lane(recall_within_s=2.0), frames)
    assert sorted(identities.values(), key=str) == [1, None]
    assert [e.start_frame_time for e in events if isinstance(e, PersonLeft)] == [4.0]


def sighting(first: float, last: float) -> Sighting:
    crop = np.zeros((4, 4, 3), np.uint8)
    return Sighting(person="p1", name=None, new=False, frame_time=first, captured_at=100 + first,
                    since_frame_time=first, since=100 + first, box=(0.0, 0.0, 10.0, 10.0),
                    score=0.99, quality=1.0, crop=crop, distance=0.1, confidence=0.8,
                    until_frame_time=last)


def test_a_recalled_sighting_joins_an_appearance_that_began_within_left_after_s() -> None:
    door = Appearances("door", EventSettings(left_after_s=1.5))
    assert [type(e) for e in door.see(sighting(10.0, 12.0), now=112.0)] == [PersonAppeared]
    past = door.recall(sighting(5.0, 8.4), now=113.0)  # 1.6 s before: one of its own
    assert [type(e) for e in past] == [PersonAppeared, PersonLeft]
    assert isinstance(past[1], PersonLeft)
    assert (past[1].start_frame_time, past[1].end_frame_time) == (5.0, 8.4)
    assert door.recall(sighting(8.0, 8.6), now=113.0, step=0.1) == []  # the open one, back-dated
    [left] = door.close(now=114.0)
    assert isinstance(left, PersonLeft)
    assert (left.start_frame_time, left.end_frame_time, left.start) == (8.0, 12.0, 108.0)
