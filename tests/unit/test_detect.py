"""Our MTCNN driver against facenet-pytorch's ``detect_face`` on real group photos."""

from __future__ import annotations

from functools import cache

import numpy as np
import numpy.typing as npt
import pytest
import torch
from PIL import Image

from stream.config import EngineSettings, GateSettings
from stream.types import Faces, Frame
from stream.vision.detect import MtcnnDetector
from stream.vision.executor import QualityGate, VisionWorker

WIDTH = 960
HEIGHT = 640


@cache
def detector() -> MtcnnDetector:
    """One CPU detector for the module (loading the weights takes a moment)."""
    return MtcnnDetector(torch.device("cpu"), detect_width=640, min_face_px=32)


@cache
def photos() -> torch.Tensor:
    """sample1.jpg … sample3.jpg as (3, 3, 640, 960) float 0..255."""
    from stream.vision.models import fetch

    directory = fetch("face-api-samples")
    frames = [np.asarray(Image.open(directory / f"sample{i}.jpg").convert("RGB")
                         .resize((WIDTH, HEIGHT))) for i in range(1, 4)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()


def iou(a: npt.NDArray[np.float32], b: npt.NDArray[np.float32]) -> npt.NDArray[np.float64]:
    """Pairwise IoU of (N, 4) and (M, 4) x1 y1 x2 y2 boxes."""
    lo = np.maximum(a[:, None, :2], b[None, :, :2])
    hi = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(hi - lo, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return np.asarray(inter / (area_a[:, None] + area_b[None, :] - inter), dtype=np.float64)


def assert_same_faces(ours: Faces, reference: Faces, landmark_px: float = 3.0) -> None:
    """Same count; each reference face matched by one of ours with IoU >= 0.8, close landmarks."""
    assert len(ours) == len(reference)
    if len(reference) == 0:
        return
    overlaps = iou(reference.boxes, ours.boxes)
    match = overlaps.argmax(axis=1)
    assert len(set(match.tolist())) == len(reference)
    assert (overlaps.max(axis=1) >= 0.8).all()
    assert np.abs(ours.landmarks[match] - reference.landmarks).max() <= landmark_px
    assert np.abs(ours.scores[match] - reference.scores).max() <= 0.01


@cache
def reference() -> list[Faces]:
    """facenet's own detections on :func:`photos`."""
    return detector().detect_reference(photos())


def test_matches_facenet_on_a_batch_of_photos() -> None:
    frames = photos()
    ours = detector().detect(frames)
    assert len(ours) == len(frames)
    assert sum(len(faces) for faces in reference()) >= 6  # the photos do show several people
    for mine, theirs in zip(ours, reference(), strict=True):
        assert mine.boxes.dtype == np.float32
        assert mine.landmarks.dtype == np.float32
        # cuDNN convolutions run in TF32 by default: ONet's landmarks move by a pixel or two.
        assert_same_faces(mine, theirs, landmark_px=5.0)
        inside = (mine.boxes[:, 2] > 0) & (mine.boxes[:, 0] < WIDTH)
        assert inside.all()


def test_single_frame_without_downscaling() -> None:
    frame = photos()[2:3]
    full = MtcnnDetector(torch.device("cpu"), detect_width=None, min_face_px=40)
    (ours,) = full.detect(frame)
    (reference,) = full.detect_reference(frame)
    assert len(ours) > 0
    assert_same_faces(ours, reference)


def test_blank_images_give_empty_faces() -> None:
    found = detector().detect(torch.full((2, 3, HEIGHT, WIDTH), 128.0))
    assert len(found) == 2
    for faces in found:
        assert len(faces) == 0
        assert faces.boxes.shape == (0, 4)
        assert faces.landmarks.shape == (0, 5, 2)


def test_noise_with_no_survivors_gives_empty_faces() -> None:
    # Small noise frames: PNet proposes boxes but R/ONet reject them all.
    generator = torch.Generator().manual_seed(0)
    noise = torch.rand((2, 3, 50, 60), generator=generator) * 255
    small = MtcnnDetector(torch.device("cpu"), detect_width=None, min_face_px=12)
    assert [len(faces) for faces in small.detect(noise)] == [0, 0]
    assert [len(faces) for faces in small.detect_reference(noise)] == [0, 0]


def test_empty_batch() -> None:
    assert detector().detect(torch.zeros((0, 3, HEIGHT, WIDTH))) == []


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_matches_facenet_on_cuda() -> None:
    gpu = MtcnnDetector(torch.device("cuda"), detect_width=640, min_face_px=32)
    for mine, theirs in zip(gpu.detect(photos().cuda()), reference(), strict=True):
        # cuDNN convolutions run in TF32 by default: ONet's landmarks move by a pixel or two.
        assert_same_faces(mine, theirs, landmark_px=5.0)


def test_the_integer_table_cuts_the_same_crops_as_the_float_one() -> None:
    from stream.vision.detect import _crops

    images = photos()[:2].round().to(torch.uint8)
    boxes = torch.tensor([[10.3, 20.7, 130.2, 140.9, 0.9], [-5.0, 600.0, 50.0, 660.0, 0.8],
                          [900.5, 3.0, 990.0, 93.0, 0.7], [400.0, 300.0, 413.0, 313.0, 0.9]])
    inds = torch.tensor([0, 1, 1, 0])
    for size in (24, 48):
        exact = _crops(images, None, boxes, inds, size)
        floats = _crops(images.float(), None, boxes, inds, size)
        assert torch.equal(exact[1], floats[1])
        assert exact[2].shape == (4, 3, size, size)
        assert (exact[2] - floats[2]).abs().max() < 1e-5


def test_crops_from_a_window_of_the_frame_are_those_of_the_whole_frame() -> None:
    # Near known faces the table covers only the window the boxes span; the sums are exact
    # integers, so the crops must be the same bit for bit as from the whole frame's table.
    from stream.vision.detect import _crops, _SummedArea

    images = photos()[:2].round().to(torch.uint8)
    whole = _SummedArea.of(images, 0, 0, WIDTH, HEIGHT)
    boxes = torch.tensor([[300.4, 200.2, 380.9, 280.1, 0.9], [350.0, 250.0, 420.0, 330.0, 0.8],
                          [310.0, 190.0, 371.0, 251.0, 0.7]])
    inds = torch.tensor([0, 1, 0])
    for size in (24, 48):
        kept, _, windowed, table = _crops(images, None, boxes, inds, size)
        _, _, expected, _ = _crops(images, whole, boxes, inds, size)
        assert table is not None
        assert (table.x0, table.y0, table.x1, table.y1) == (299, 189, 420, 330)
        assert len(kept) == 3 and torch.equal(windowed, expected)
    # A box outside the window gets a new table; one inside reuses it.
    _, _, _, table = _crops(images, None, boxes, inds, 24)
    assert table is not None
    inside = _crops(images, table, boxes[:1], inds[:1], 48)[3]
    outside = _crops(images, table, torch.tensor([[10.0, 10.0, 60.0, 60.0, 0.9]]), inds[:1], 48)[3]
    assert inside is table and outside is not None and (outside.x0, outside.y0) == (9, 9)


def test_eight_bit_frames_take_the_fast_path_and_find_the_same_people() -> None:
    # What decoders give: uint8 frames. The fast path shrinks the pyramid differently from
    # facenet (antialiased bilinear rather than area), so borderline faces may differ; every
    # clear face (score >= 0.99) of facenet is found, in the same place.
    frames = photos()
    shrunk = torch.nn.functional.interpolate(frames, size=(round(HEIGHT * 640 / WIDTH), 640),
                                             mode="area")
    fast = detector().detect(shrunk.round().to(torch.uint8), source_width=WIDTH)
    for mine, theirs in zip(fast, reference(), strict=True):
        clear = theirs.select(theirs.scores >= 0.99)
        assert len(clear) > 0
        overlaps = iou(clear.boxes, mine.boxes)
        assert (overlaps.max(axis=1) >= 0.8).all()


def test_the_engine_settings_reach_the_detector_and_the_gate(weights: None) -> None:
    engine = EngineSettings(embedder="dlib-resnet", device="cpu", min_face_px=24,
                            gate=GateSettings(min_face_px=48))
    worker = VisionWorker.from_settings(engine)
    assert isinstance(worker.detector, MtcnnDetector) and worker.detector.min_face_px == 24
    assert worker.gate == QualityGate.from_settings(engine) and worker.gate.min_face_px == 48
    assert QualityGate() == QualityGate.from_settings(EngineSettings())  # one set of defaults


def test_small_faces_are_found_and_fit_to_join_a_known_person_but_not_good(
        weights: None) -> None:
    from stream.vision.models import fetch

    worker = VisionWorker.from_settings(EngineSettings(embedder="dlib-resnet", device="cpu",
                                                       min_face_px=24))
    photo = Image.open(fetch("face-api-samples") / "sample1.jpg").convert("RGB")
    for width, good in ((640, True), (320, False)):  # faces about 60 and 30 px wide
        image = np.array(photo.resize((width, width * 2 // 3)))
        (found,) = worker.process([Frame(0, 0.0, image)])
        assert len(found.faces) == 3 and found.fair.all()
        assert found.good.tolist() == [good] * 3
        expected = [None] * 3 if good else [("size", 40.0)] * 3
        assert [miss and (miss.check, miss.limit) for miss in found.misses] == expected


def test_looking_near_known_faces_finds_them_again_where_they_moved() -> None:
    frames = photos()[:1].round().to(torch.uint8)
    (known,) = detector().detect(frames)
    assert len(known) >= 3
    (same,) = detector().detect_near(frames, [known])
    assert_same_faces(same, known, landmark_px=4.0)
    # The picture moved by 8 pixels right and 6 down (a face moves about that much between
    # sampled frames): every face is found again, moved with it.
    moved = torch.roll(frames, shifts=(6, 8), dims=(2, 3))
    (found,) = detector().detect_near(moved, [known])
    (full,) = detector().detect(moved)
    clear = full.select(full.scores >= 0.99)
    overlaps = iou(clear.boxes, found.boxes)
    assert len(clear) and (overlaps.max(axis=1) >= 0.8).all()
    (nothing,) = detector().detect_near(frames, [Faces.empty()])  # nowhere to look
    assert len(nothing) == 0


def box_offsets(moved: list[Faces], plain: list[Faces]) -> npt.NDArray[np.float64]:
    """The mean box-corner offset (x, y) of the moved face found on each clear plain face
    (score >= 0.99; each must be found, overlapping by IoU >= 0.7)."""
    offsets = []
    for a, b in zip(moved, plain, strict=True):
        clear = b.boxes[b.scores >= 0.99]
        assert len(clear) > 0 and len(a) > 0
        overlaps = iou(clear, a.boxes)
        assert (overlaps.max(axis=1) >= 0.7).all()
        offsets.append((a.boxes[overlaps.argmax(axis=1)] - clear).reshape(-1, 2, 2).mean(axis=1))
    return np.concatenate(offsets)


def test_the_robustness_benchmarks_moved_frames_give_the_faces_where_they_are() -> None:
    from benchmarks.accuracy import ShiftedDetector

    frames = photos()
    plain = detector().detect(frames)
    # Moved 12 px: not moved back, every face would be about 12 px right and down; moved
    # back, the detector's own jitter is left (a few pixels, partly shared by all the faces:
    # the PNet grid lies differently on the image).
    moved = ShiftedDetector(detector(), 12).detect(frames)
    assert np.abs(np.median(box_offsets(moved, plain), axis=0)).max() < 4.0
    near = ShiftedDetector(detector(), 12).detect_near(frames, plain)
    assert np.abs(np.median(box_offsets(near, plain), axis=0)).max() < 4.0
    # The decoder's 640-wide copy moved 8 px is the full frame moved 12 px: the same faces.
    copies = torch.nn.functional.interpolate(frames, size=(427, 640), mode="area")
    for a, b in zip(ShiftedDetector(detector(), 8).detect(copies, source_width=WIDTH), moved,
                    strict=True):
        assert np.allclose(a.boxes, b.boxes, atol=1e-3)
        assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
    # The gap is filled with the image's first row and column, not black.
    tiny = torch.arange(12, dtype=torch.uint8).view(1, 1, 3, 4)
    assert ShiftedDetector(detector(), 1)._moved(tiny).tolist() == [[[
        [0, 0, 1, 2], [0, 0, 1, 2], [4, 4, 5, 6]]]]
