"""The live second look: a young identity joined to the older one it is, on plain vectors."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from stream.config import EventSettings
from stream.identity.consolidate import Duplicate, older_identity
from stream.identity.gallery import Gallery
from stream.identity.matcher import Identifier, MatchSettings
from stream.identity.track import Observation
from stream.pipeline.lane import Lane
from stream.storage import open_store
from stream.types import Faces, Frame, IdentityMerged, PersonLeft
from stream.vision.executor import FrameFaces

DIM = 16
RNG = np.random.default_rng(5)
SETTINGS = MatchSettings(threshold=0.325)
BAR = SETTINGS.threshold - SETTINGS.close_band


def unit(v: np.ndarray) -> np.ndarray:
    normalised: np.ndarray = v / np.linalg.norm(v, axis=-1, keepdims=True)
    return normalised.astype(np.float32)


CENTRES = unit(RNG.normal(size=(3, DIM)))
# A direction away from person 0, orthogonal to their centre: where their dim or compressed
# faces lie, at some distance.
_OTHER = RNG.normal(size=DIM)
DRIFT = unit(_OTHER - CENTRES[0] * (_OTHER @ CENTRES[0]))


def toward(distance: float, noise: float = 0.003) -> np.ndarray:
    """A face of person 0 ``distance`` from their centre, along ``DRIFT``."""
    angle = 2 * np.arcsin(distance / 2)
    return unit(CENTRES[0] * np.cos(angle) + DRIFT * np.sin(angle)
                + RNG.normal(size=DIM) * noise / np.sqrt(DIM))


def in_memory() -> Gallery:
    return Gallery(open_store(None, embedder="test", version="1", dim=DIM))


def faces_at(distance: float, count: int = 24) -> np.ndarray:
    return np.stack([toward(distance) for _ in range(count)])


def look_again(gallery: Gallery, young: int, faces: np.ndarray,
               apart: frozenset[int] = frozenset(), named: bool = False) -> Duplicate | None:
    """The second look at ``young`` with the matcher's settings."""
    return older_identity(gallery, young, faces, bar=BAR, margin=SETTINGS.margin,
                          neighbours=16, threshold=SETTINGS.threshold, apart=apart,
                          named=lambda identity: named)


def test_a_young_identity_close_to_an_older_one_on_average_is_it() -> None:
    gallery = in_memory()
    old = gallery.create(np.stack([toward(0.0)]))
    young = gallery.create(np.stack([toward(0.30)]))
    found = look_again(gallery, young, faces_at(0.26))
    assert found is not None and (found.keep, found.gone) == (old, young)
    assert abs(found.linkage - 0.26) < 0.01


def test_a_young_identity_is_not_joined_far_with_others_seen_together_or_both_named() -> None:
    gallery = in_memory()
    old = gallery.create(np.stack([toward(0.0)]))
    young = gallery.create(np.stack([toward(0.30)]))
    assert look_again(gallery, young, faces_at(0.30)) is None  # over the bar: stays a split
    assert look_again(gallery, young, faces_at(0.26), apart=frozenset({old})) is None
    assert look_again(gallery, young, faces_at(0.26), named=True) is None  # both named
    assert look_again(gallery, old, faces_at(0.26)) is None  # only an older one is joined
    gallery.reject(old, faces_at(0.26, 3).mean(axis=0))
    assert look_again(gallery, young, faces_at(0.26)) is None  # "not this person" holds


def test_a_young_identity_between_two_older_ones_is_neither() -> None:
    gallery = in_memory()
    gallery.create(np.stack([toward(0.0)]))
    gallery.create(np.stack([toward(0.52)]))  # a look-alike along the same line
    young = gallery.create(np.stack([toward(0.26)]))
    found = look_again(gallery, young, faces_at(0.26))
    assert found is None


def test_an_identity_on_screen_with_the_young_one_is_no_rival_for_the_margin() -> None:
    """She comes back while the other woman is on screen: the young ID is as near both older
    ones on average, but the one on screen with it cannot be it, so it is joined to hers."""
    gallery = in_memory()
    old = gallery.create(np.stack([toward(0.0)]))
    other = gallery.create(np.stack([toward(0.52)]))
    young = gallery.create(np.stack([toward(0.26)]))
    found = look_again(gallery, young, faces_at(0.26), apart=frozenset({other}))
    assert found is not None and (found.keep, found.gone) == (old, young)


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(0.0, 0.4), min_size=1, max_size=4), st.floats(0.0, 0.4),
       st.sets(st.integers(1, 4)))
def test_a_second_look_never_joins_identities_seen_together(
        olds: list[float], young_at: float, together: set[int]) -> None:
    gallery = in_memory()
    for distance in olds:
        gallery.create(np.stack([toward(distance)]))
    young = gallery.create(np.stack([toward(young_at)]))
    found = look_again(gallery, young, faces_at(young_at), apart=frozenset(together))
    assert found is None or (found.keep not in together and found.keep < young
                             and found.linkage < BAR)


def frame_of(index: int, face: np.ndarray | None) -> FrameFaces:
    """Frame ``index`` (10 a second) with one sure, good face at one place, or none."""
    n = 0 if face is None else 1
    faces = Faces(np.tile(np.array([[40, 30, 90, 90]], np.float32), (n, 1)),
                  np.full(n, 0.99, np.float32), np.zeros((n, 5, 2), np.float32))
    vectors = np.zeros((0, DIM), np.float32) if face is None else face[None]
    good = np.ones(n, np.bool_)
    return FrameFaces(Frame(index, index / 10, np.zeros((120, 160, 3), np.uint8)), faces,
                      vectors, good, np.full(n, 10, np.float32), np.full(n, 100, np.float32),
                      good, np.ones(n, np.float32), good, (None,) * n)


def test_her_return_in_other_light_is_split_then_joined_online_with_identity_merged() -> None:
    """Person 0 is seen, leaves, and comes back in another light: her first 12 faces are a
    close call (0.31 from her), so she becomes someone new out of patience; as the light comes
    back her faces near her own, and the second look joins the young ID to hers."""
    gallery = in_memory()
    identifier = Identifier(gallery, SETTINGS, max_gap_s=0.5)
    lane = Lane("cam", identifier, EventSettings(left_after_s=1.5), threshold=0.325)
    looks = ([toward(0.0) for _ in range(20)] + [None] * 30
             + [toward(0.31) for _ in range(12)] + [toward(0.2) for _ in range(30)])
    events = []
    for index, look in enumerate(looks):
        events += lane.take(frame_of(index, look), now=1000.0 + index / 10).events
    events += lane.finish(now=1100.0)
    merged = [event for event in events if isinstance(event, IdentityMerged)]
    assert [(event.person, event.merged) for event in merged] == [("p1", "p2")]
    assert len(gallery) == 1 and 2 not in gallery
    left = [event for event in events if isinstance(event, PersonLeft)]
    assert [event.person for event in left] == ["p1", "p1"]  # her return is hers
    assert left[1].start_frame_time == 5.0  # from her first face back, under the young ID


def test_someone_else_close_to_her_stays_someone_else() -> None:
    gallery = in_memory()
    identifier = Identifier(gallery, SETTINGS, max_gap_s=0.5)
    looks = [toward(0.0) for _ in range(20)] + [None] * 30 + [toward(0.31) for _ in range(40)]
    for index, look in enumerate(looks):
        identifier.observe(index / 10, [] if look is None else [Observation(
            index, index / 10, np.array([40, 30, 90, 90], np.float32), 0.99, look, 1.0, True)])
        assert not identifier.merged()
    identifier.finish()
    assert len(gallery) == 2
