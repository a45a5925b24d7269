"""Which of a track's faces are its person: the ones the detector is sure of, and the ones it
doubted that look like the track's good faces."""

from __future__ import annotations

import numpy as np

from stream.identity.track import Observation, Track

DIM = 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM, np.float32)
    vector[:len(values)] = values
    normed: np.ndarray = (vector / np.linalg.norm(vector)).astype(np.float32)
    return normed


PERSON = unit(1.0)
NEAR = unit(1.0, 0.1)  # 0.1 from PERSON
FAR = unit(1.0, 1.0)  # 0.77 from PERSON: a hand, a dress


def obs(t: float, score: float, embedding: np.ndarray | None) -> Observation:
    return Observation(int(t * 10), t, np.array([0, 0, 50, 50], np.float32), score, embedding,
                       1.0, score >= 0.95)


def test_the_span_runs_from_the_first_to_the_last_face_the_detector_is_sure_of() -> None:
    track = Track(1, [obs(0.0, 0.8, NEAR), obs(0.1, 0.99, PERSON), obs(0.2, 0.99, PERSON),
                      obs(0.3, 0.8, NEAR)])
    span = track.person_span(0.95, None)
    assert span is not None and (span[0].t, span[1].t) == (0.1, 0.2)


def test_doubted_faces_that_look_like_the_good_ones_are_the_person_a_hand_is_not() -> None:
    track = Track(1, [obs(0.0, 0.8, FAR), obs(0.1, 0.8, NEAR), obs(0.2, 0.99, PERSON),
                      obs(0.3, 0.99, PERSON), obs(0.4, 0.7, NEAR), obs(0.5, 0.8, None),
                      obs(0.6, 0.8, FAR)])
    span = track.person_span(0.95, 0.3)
    # Not the far faces at either end, nor one without an embedding.
    assert span is not None and (span[0].t, span[1].t) == (0.1, 0.4)


def test_a_track_the_detector_is_never_sure_of_has_no_span() -> None:
    track = Track(1, [obs(0.0, 0.8, PERSON), obs(0.1, 0.9, PERSON)])
    assert track.person_span(0.95, 0.3) is None
    assert track.person_span(0.95, None) is None
