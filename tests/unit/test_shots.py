"""Shot boundaries on plain images: cuts are found; dimming, zooms and people coming are not."""

from __future__ import annotations

import numpy as np

from stream.shots import ShotBoundaries


def scene(seed: int, height: int = 180, width: int = 320) -> np.ndarray:
    """A picture with its own layout and colours: smooth blotches on a gradient."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    image = np.zeros((height, width, 3), np.float32)
    for channel in range(3):
        image[..., channel] = 128 + 60 * (rng.uniform(-1, 1) * x + rng.uniform(-1, 1) * y)
        for _ in range(10):
            cy, cx, r = rng.uniform(0, 1), rng.uniform(0, 1.8), rng.uniform(0.05, 0.2)
            image[..., channel] += rng.uniform(-120, 120) * np.exp(
                -((y - cy) ** 2 + (x - cx) ** 2) / r ** 2)
    return np.clip(image, 0, 255).astype(np.uint8)


def test_a_cut_is_found_once_and_the_first_frame_is_no_cut() -> None:
    shots = ShotBoundaries()
    first, second = scene(1), scene(2)
    assert not shots.is_cut(first)
    assert not shots.is_cut(first)
    assert shots.is_cut(second)
    assert not shots.is_cut(second)


def test_dimming_and_lighting_drift_are_not_cuts() -> None:
    shots = ShotBoundaries()
    image = scene(4).astype(np.float32)
    for factor in (1.0, 0.8, 0.6, 0.45, 0.35, 0.6, 1.0, 1.2):
        assert not shots.is_cut(np.clip(image * factor, 0, 255).astype(np.uint8)), factor


def test_a_zoom_and_a_person_coming_in_are_not_cuts() -> None:
    shots = ShotBoundaries()
    image = scene(5, 360, 640)
    for crop in range(0, 60, 6):  # a slow zoom: the view narrows step by step
        view = image[crop:360 - crop, crop * 16 // 9:640 - crop * 16 // 9]
        rows = np.linspace(0, view.shape[0] - 1, 180).astype(int)
        cols = np.linspace(0, view.shape[1] - 1, 320).astype(int)
        assert not shots.is_cut(view[rows][:, cols])
    shots = ShotBoundaries()
    shots.is_cut(scene(6))
    entered = scene(6).copy()
    entered[40:160, 100:190] = (200, 170, 150)  # a person-sized patch appears
    assert not shots.is_cut(entered)


def test_a_change_of_frame_size_is_a_cut() -> None:
    shots = ShotBoundaries()
    shots.is_cut(scene(7))
    assert shots.is_cut(scene(7, 240, 320))
