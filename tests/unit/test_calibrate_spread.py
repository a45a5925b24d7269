"""The calibration's own arithmetic: the gallery's exemplars and the fitted bars."""

from __future__ import annotations

import numpy as np

from benchmarks.calibrate_spread import Pair, exemplars, fit, visits


def test_visits_split_at_gaps_and_exemplars_leave_out_near_duplicates() -> None:
    same = np.tile(np.eye(4, dtype=np.float32)[0], (20, 1))
    faces = [(t / 10, vector) for t, vector in enumerate(same)]
    faces += [(10.0 + t / 10, vector) for t, vector in enumerate(same)]
    found = visits(faces)
    assert [(start, len(vectors)) for start, vectors in found] == [(0.0, 20), (10.0, 20)]
    assert len(exemplars(found[0][1])) == 1  # two 10-face templates, one a duplicate


def test_fit_finds_the_gap_and_a_spread_slope_only_where_spread_tells_people_apart() -> None:
    flat = [Pair("v", True, 0.25, 0.2, 0.1), Pair("v", True, 0.28, 0.2, 0.3),
            Pair("v", False, 0.33, 0.3, 0.1), Pair("v", False, 0.35, 0.3, 0.3)]
    lines = fit(flat)
    assert "a fixed bar at 0.330 joins 2/2" in lines[1]
    assert "best b = +0.00" in lines[-1] or "best b = -0.00" in lines[-1]
    # One person, widely spread, farther than a tight pair of two people: only a slope joins.
    spread = [Pair("v", True, 0.25, 0.2, 0.1), Pair("v", True, 0.34, 0.3, 0.4),
              Pair("v", False, 0.31, 0.3, 0.1)]
    assert "joins 1/2" in fit(spread)[1]
    assert "joins 2/2" in fit(spread)[-1] and "best b = +" in fit(spread)[-1]
