"""Detector speed: facenet-pytorch's ``detect_face`` against our MTCNN driver, in one process.

``python -m benchmarks.detector_speed [--photos DIR] [--device DEV] [--repeats N]``

Every path runs the same :class:`~stream.vision.detect.MtcnnDetector` (same weights, same
downscale to ``detect_width`` 640, ``min_face_px`` 40) on one batch of 4 frames of 1280x720 made
from the face-api sample photos, after a warm-up, with 2 CPU threads: facenet's own code, our
driver on float frames (facenet's arithmetic), on 8-bit frames (what decoders give: the fast
path), on 8-bit frames with the networks of the onnx backend, and that looking only near the
faces it found (what frames between full detections get). Prints ms per frame.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from stream.types import Faces
from stream.vision import backends
from stream.vision.detect import MtcnnDetector

FRAME_SIZE = (1280, 720)
BATCH = 4


def load_frames(directory: Path, size: tuple[int, int] = FRAME_SIZE,
                count: int = BATCH) -> torch.Tensor:
    """``count`` frames (B, 3, H, W) float 0..255 from sample1.jpg… in ``directory``, resized."""
    frames = [np.asarray(Image.open(directory / f"sample{i + 1}.jpg").convert("RGB").resize(size))
              for i in range(count)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float()


def time_per_frame(detect: Callable[[torch.Tensor], list[Faces]], frames: torch.Tensor,
                   repeats: int, device: torch.device) -> tuple[float, list[Faces]]:
    """Milliseconds per frame of ``detect`` on ``frames`` (best of ``repeats`` batches)."""
    found = detect(frames)
    best = float("inf")
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        found = detect(frames)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return best * 1000 / len(frames), found


def main(argv: Sequence[str] | None = None) -> int:
    """Command line entry point; prints the timings and the faces found per frame."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.detector_speed",
                                     description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=Path, default=None,
                        help="folder with sample1.jpg… (default: the face-api-samples model)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--repeats", type=int, default=5, help="timed batches per path")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default: 2)")
    args = parser.parse_args(argv)

    torch.set_num_threads(args.threads)
    if args.photos is None:
        from stream.vision.models import fetch

        args.photos = fetch("face-api-samples")
    device = torch.device(args.device)
    frames = load_frames(args.photos).to(device)
    detector = MtcnnDetector(device, detect_width=640, min_face_px=40)
    onnx = MtcnnDetector(device, detect_width=640, min_face_px=40,
                         nets=backends.mtcnn_nets(device),
                         crops_per_call=backends.mtcnn_crops_per_call("onnx", device))
    print(f"{BATCH} frames of {FRAME_SIZE[0]}x{FRAME_SIZE[1]} on {device}, "
          f"{torch.get_num_threads()} threads, best of {args.repeats}")
    times = {}
    eight_bit = frames.to(torch.uint8)
    for name, detect, images in (
            ("facenet detect_face", detector.detect_reference, frames),
            ("our driver, float", detector.detect, frames),
            ("our driver, 8-bit", detector.detect, eight_bit),
            ("onnx, 8-bit", onnx.detect, eight_bit)):
        times[name], found = time_per_frame(detect, images, args.repeats, device)
        print(f"{name:20s} {times[name]:8.1f} ms/frame  faces {[len(f) for f in found]}")
    # What most frames of a video get: a look near the faces of the frame before.
    known = found
    times["onnx, near faces"], found = time_per_frame(
        lambda images: onnx.detect_near(images, known), eight_bit, args.repeats, device)
    print(f"{'onnx, near faces':20s} {times['onnx, near faces']:8.1f} ms/frame  faces "
          f"{[len(f) for f in found]}")
    for name, taken in times.items():
        print(f"{name:20s} {times['facenet detect_face'] / taken:8.2f}x facenet's speed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
