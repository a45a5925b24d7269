"""Frame preparation, the quality gate's relative sharpness, the worker's detector seam, frames
spared the full-frame detector, and frames run side by side on the CPU's threads."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from stream.types import Faces, Frame
from stream.vision.detect import MtcnnDetector
from stream.vision.executor import (
    NEAR_WITHIN_S,
    SharpnessBaseline,
    VisionWorker,
    apply_gain,
    exposure_gains,
    split,
)

EVERY_S = 0.5  # full detections at most this far apart, when the worker may skip them


def test_dark_frames_are_brightened_and_normal_ones_kept() -> None:
    normal = torch.full((1, 3, 64, 64), 100.0)
    normal[..., :16, :] = 230.0  # a bright quarter: its 98th percentile is 230
    dim = normal * 0.3
    gains = exposure_gains(torch.cat([normal, dim]))
    assert gains[0] == 1.0 and 2.5 < gains[1] <= 4.0
    out = apply_gain(torch.cat([normal, dim]), gains)
    assert torch.equal(out[0], normal[0])
    assert out[1].max() <= 255.0 and out[1].mean() > 2.5 * dim.mean()


def test_a_gain_of_one_leaves_frames_uncopied_and_eight_bit_frames_stay_eight_bit() -> None:
    frames = torch.full((2, 3, 8, 8), 60, dtype=torch.uint8)
    assert apply_gain(frames, torch.ones(2)) is frames
    assert apply_gain(frames, 1.0) is frames
    brighter = apply_gain(frames, torch.tensor([1.0, 2.5]))
    assert brighter.dtype == torch.uint8
    assert brighter[0].eq(60).all() and brighter[1].eq(150).all()
    assert apply_gain(frames, 5.0).eq(255).all()


def test_sharpness_baseline_is_a_running_median() -> None:
    baseline = SharpnessBaseline(window=4)
    assert baseline.update(np.zeros(0, np.float32)) == 0.0
    assert baseline.update(np.array([1, 2, 3], np.float32)) == 2.0
    assert baseline.update(np.array([10, 10, 10], np.float32)) == 10.0  # window of 4: 3,10,10,10


class OneBoxDetector:
    """A :class:`~stream.vision.detect.FaceDetector` that finds the same face in every image."""

    detect_width: int | None = None

    def __init__(self, faces: Faces) -> None:
        self.faces = faces

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        return [self.faces for _ in range(images.shape[0])]


def test_the_worker_embeds_and_grades_what_its_detector_finds(weights: None) -> None:
    box = np.array([[40, 40, 140, 140]], np.float32)
    landmarks = np.array([[[70, 75], [110, 75], [90, 95], [73, 118], [107, 118]]], np.float32)
    faces = Faces(box, np.array([0.99], np.float32), landmarks)
    worker = VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"),
                          detector=OneBoxDetector(faces))
    flat = Frame(0, 0.0, np.full((180, 180, 3), 128, np.uint8))
    textured = Frame(1, 0.1, np.random.default_rng(0).integers(0, 256, (180, 180, 3), np.uint8))
    blurred, sharp = worker.process([flat, textured])
    for found in (blurred, sharp):
        assert np.array_equal(found.faces.boxes, box) and found.embedded.tolist() == [True]
        assert found.embeddings.shape == (1, 128)
        assert np.isclose(np.linalg.norm(found.embeddings[0]), 1.0, atol=1e-4)
    assert blurred.sharpness[0] < 1e-6 and blurred.good.tolist() == [False]
    assert sharp.sharpness[0] > 100 and sharp.good.tolist() == [True]


class CountingDetector(MtcnnDetector):
    """MTCNN, counting the images that went through the full-frame detector."""

    full = 0

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        self.full += images.shape[0]
        return super().detect(images, source_width=source_width)


def test_frames_skip_the_full_detector_while_their_faces_stay_and_nothing_else_changes(
        weights: None) -> None:
    from stream.vision.models import fetch

    photo = np.array(Image.open(fetch("face-api-samples") / "sample1.jpg").convert("RGB")
                     .resize((960, 640)))
    hidden = photo.copy()
    hidden[:, 700:] = 128  # the third face is not there yet
    detector = CountingDetector(torch.device("cpu"), detect_width=640)
    worker = VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"), detector=detector,
                          full_detection_every_s=EVERY_S)
    camera = SharpnessBaseline()

    first, second = worker.process([Frame(0, 0.0, hidden), Frame(1, 0.1, hidden)], None,
                                   [camera, camera])
    assert detector.full == 1 and len(first.faces) == len(second.faces) == 2
    (third,) = worker.process([Frame(2, 0.2, photo)], None, [camera])  # someone came
    assert detector.full == 2 and len(third.faces) == 3
    (fourth,) = worker.process([Frame(3, 0.3, photo)], None, [camera])
    assert detector.full == 2 and len(fourth.faces) == 3
    # The frame before is too long ago (faces may have moved far): a full look.
    (after_gap,) = worker.process([Frame(4, 0.35 + NEAR_WITHIN_S, photo)], None, [camera])
    assert detector.full == 3 and len(after_gap.faces) == 3
    start = after_gap.frame.t
    steps = [start + 0.1 * k for k in range(1, 6)]  # the last is EVERY_S after the full look
    near = [worker.process([Frame(5 + k, t, photo)], None, [camera])[0]
            for k, t in enumerate(steps)]
    assert detector.full == 4 and [len(found.faces) for found in near] == [3] * 5
    assert steps[-1] - start >= EVERY_S  # a full look at bounded intervals
    (cut,) = worker.process([Frame(10, steps[-1] + 0.1, photo, discontinuity=True)], None,
                            [camera])
    assert detector.full == 5 and len(cut.faces) == 3
    worker.process([Frame(11, 2.0, photo)])  # a frame of no known source
    assert detector.full == 6


@given(st.lists(st.integers(0, 20), max_size=40), st.integers(1, 8))
def test_work_is_split_into_contiguous_runs_of_about_equal_weight(weights: list[int],
                                                                  parts: int) -> None:
    runs = split(weights, parts)
    assert [i for run in runs for i in run] == list(range(len(weights)))
    assert all(len(run) > 0 for run in runs) and len(runs) <= parts
    heavy = [max(1, weight) for weight in weights]
    if len(runs) > 1:  # no run is lighter than it must be: each holds a fair share but one item
        share = sum(heavy) / min(parts, len(heavy))
        assert all(sum(heavy[i] for i in run) >= share - max(heavy) for run in runs[:-1])
    if weights and parts > 1 and len(set(heavy)) == 1:
        assert len(runs) == min(parts, len(weights))  # equal items: every thread gets some


def sample_frames() -> list[Frame]:
    """Four frames 0.1 s apart: the first four real photos of the face-api package."""
    from stream.vision.models import fetch

    samples = fetch("face-api-samples")
    return [Frame(i, i / 10, np.array(Image.open(samples / f"sample{i + 1}.jpg")
                                      .convert("RGB").resize((960, 640))))
            for i in range(4)]


def test_frames_detected_and_embedded_side_by_side_give_what_one_thread_gives(
        weights: None) -> None:
    frames = sample_frames()
    one = VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"), threads=1)
    two = VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"), threads=2)
    alone, side_by_side = one.process(frames), two.process(frames)
    assert (one.threads, two.threads) == (1, 2)
    assert sum(len(found.faces) for found in alone) >= 8
    for a, b in zip(alone, side_by_side, strict=True):
        assert a.frame is b.frame and len(a.faces) == len(b.faces)
        assert np.allclose(a.faces.boxes, b.faces.boxes, atol=1e-2)
        assert np.allclose(a.embeddings, b.embeddings, atol=1e-4)
        assert np.allclose(a.sharpness, b.sharpness, rtol=1e-4)


def test_one_sources_frames_embedded_while_the_next_is_detected_give_what_one_thread_gives(
        weights: None) -> None:
    frames = sample_frames()
    # One source, the near search on: its frames are detected one after the other, and with
    # two threads (ONNX Runtime) each frame's faces are embedded while the next is detected.
    one, two = (VisionWorker(embedder="dlib-resnet", device=torch.device("cpu"), threads=n,
                             backend="onnx", full_detection_every_s=EVERY_S) for n in (1, 2))
    alone = one.process(frames, None, [SharpnessBaseline()] * len(frames))
    overlapped = two.process(frames, None, [SharpnessBaseline()] * len(frames))
    assert sum(len(found.faces) for found in alone) >= 8
    for a, b in zip(alone, overlapped, strict=True):
        assert a.frame is b.frame and len(a.faces) == len(b.faces)
        assert a.embedded.all() and b.embedded.all()
        assert np.allclose(a.embeddings, b.embeddings, atol=1e-4)
        assert np.allclose(a.sharpness, b.sharpness, rtol=1e-4)
        assert a.good.tolist() == b.good.tolist()
