"""The one owner of the models and the device: detection, alignment, embedding and face quality
for batches of frames, under ``torch.inference_mode()``."""

from __future__ import annotations

import os
import weakref
from collections import Counter, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from stream.config import EngineSettings
from stream.types import Faces, FloatArray, Frame, GateMiss
from stream.vision import backends
from stream.vision.detect import FaceDetector, MtcnnDetector, NearDetector
from stream.vision.embed import Embedder
from stream.vision.embedders import OFFLINE, default_embedder_name, load_embedder

SkipRule = Callable[[Frame, Faces], npt.NDArray[np.bool_]]
_Embedded = tuple[FloatArray, FloatArray, FloatArray]  # vectors, sharpness, brightness
_Job = tuple[Frame, Faces, float]  # a frame, its faces to embed, the gain its detection had
Item = TypeVar("Item")
Result = TypeVar("Result")
# "Changed": a cell of 8x8 detection pixels whose mean grey level moved by more than this since
# the full detection (compression noise stays well under it), away from the known faces.
_CELL = 8
_CHANGED_LEVELS = 12.0
# The near search follows faces from one frame to the next only while those are this close in
# time. At 10 analysed frames a second (analyze's default) it found the people full detections
# find on every benchmark video; at 5 (a camera's default: faces move twice as far between
# frames) it split people on compressed video and lost one look-alike, so such frames all get
# full detections.
NEAR_WITHIN_S = 0.15
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]]).view(1, 1, 3, 3)


@dataclass(frozen=True)
class QualityGate:
    """What a face needs before it may create or confirm an identity."""

    min_score: float = 0.95
    min_face_px: int = 40  # shorter side of the box, in frame pixels
    min_sharpness: float = 3.0  # variance of the Laplacian of the grey chip's centre (0..255)
    # ... and this share of the source's typical face sharpness: a focus or motion blur phase
    # fails it, while a uniformly soft (compressed, low-resolution) video still gets faces.
    relative_sharpness: float = 0.4
    min_brightness: float = 45.0  # mean grey level of the chip's centre (0..255)
    # Short of the gate, smaller or softer, yet recognisable: such faces may join a known person
    # (with more of them, nearer), never create one (``fair`` faces).
    recall_min_face_px: int = 20
    recall_relative_sharpness: float = 0.2

    @classmethod
    def from_settings(cls, engine: EngineSettings) -> QualityGate:
        """The gate of ``engine.gate`` and ``engine.recall``."""
        gate, recall = engine.gate, engine.recall
        return cls(gate.min_score, gate.min_face_px, gate.min_sharpness, gate.relative_sharpness,
                   gate.min_brightness, recall.min_face_px, recall.relative_sharpness)


class SharpnessBaseline:
    """The running median sharpness of one source's recent faces (one per video or camera)."""

    def __init__(self, window: int = 300) -> None:
        self._values: deque[float] = deque(maxlen=window)

    def update(self, values: FloatArray) -> float:
        """Add the sharpness of new faces; returns the median of the window."""
        self._values.extend(float(v) for v in values)
        return float(np.median(self._values)) if self._values else 0.0


@dataclass
class _Seen:
    """A source's latest full-frame detection (its time, grey cells and faces) and its latest
    faces since, with their frame's time."""

    t: float
    cells: torch.Tensor  # (h / _CELL, w / _CELL) mean grey of the detector's image
    at_full: Faces
    latest: Faces
    latest_t: float


def grey_cells(images: torch.Tensor) -> torch.Tensor:
    """The mean brightness of each cell of ``_CELL`` x ``_CELL`` pixels of ``images``
    (B, 3, H, W, 0..255), as (B, H / _CELL, W / _CELL)."""
    # The green channel of every other pixel: most of the luminance, a twelfth of the work.
    return F.avg_pool2d(images[:, 1:2, ::2, ::2].float(), _CELL // 2)[:, 0]


def changed_elsewhere(cells: torch.Tensor, before: torch.Tensor, boxes: FloatArray) -> bool:
    """Whether grey ``cells`` moved from ``before`` anywhere but around ``boxes`` (N, 4), in the
    cells' pixels (each box widened by half its size on every side: heads and bodies move)."""
    changed = (cells - before).abs() > _CHANGED_LEVELS
    for x1, y1, x2, y2 in boxes:
        dx, dy = (x2 - x1) / 2, (y2 - y1) / 2
        changed[max(0, int((y1 - dy) / _CELL)):max(0, int((y2 + dy) / _CELL) + 1),
                max(0, int((x1 - dx) / _CELL)):max(0, int((x2 + dx) / _CELL) + 1)] = False
    return bool(changed.any())


def found_again(before: Faces, after: Faces, min_iou: float = 0.3) -> bool:
    """Whether every face of ``before`` overlaps one of ``after`` by at least ``min_iou``."""
    if len(before) == 0:
        return True
    if len(after) == 0:
        return False
    a, b = before.boxes[:, None, :], after.boxes[None, :, :]
    inter = (np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
             * np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0,
                       None))
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    iou = inter / np.maximum(area_a + area_b - inter, 1e-6)
    return bool((iou.max(axis=1) >= min_iou).all())


@dataclass(frozen=True)
class FrameFaces:
    """What the models found on one frame."""

    frame: Frame
    faces: Faces
    embeddings: FloatArray  # (N, D); zero rows where ``embedded`` is False
    embedded: npt.NDArray[np.bool_]  # (N,) whether the embedding (and grading) was computed
    sharpness: FloatArray  # (N,)
    brightness: FloatArray  # (N,)
    good: npt.NDArray[np.bool_]  # (N,) passed the quality gate
    quality: FloatArray  # (N,) for ranking thumbnails and exemplars
    fair: npt.NDArray[np.bool_]  # (N,) good, or short of it but fit to join a known person
    misses: tuple[GateMiss | None, ...]  # (N,) the gate's first limit each face missed


def exposure_gains(images: torch.Tensor, *, dark: float = 120.0, target: float = 200.0,
                   max_gain: float = 4.0) -> torch.Tensor:
    """A gain per image of ``images`` (B, 3, H, W, 0..255): 1 for most, more for a dark one,
    whose bright end (98th percentile of a pixel sample) is under ``dark``, to bring that end to
    ``target``. MTCNN misses faces in dim scenes and the embedder drifts on them; brightening a
    normal frame would wash out its brightest faces, so those are left alone."""
    sample = images[:, :, ::4, ::4].float().mean(dim=1).flatten(1)
    bright_end = torch.quantile(sample, 0.98, dim=1)
    gain = (target / bright_end.clamp(min=1.0)).clamp(1.0, max_gain)
    return torch.where(bright_end < dark, gain, torch.ones_like(gain))


def apply_gain(images: torch.Tensor, gain: torch.Tensor | float) -> torch.Tensor:
    """``images`` (0..255) times ``gain`` (one per image, or one for all), clipped; uint8 images
    stay uint8 (rounded). A gain of 1 leaves them as they are, uncopied (the common case)."""
    if isinstance(gain, torch.Tensor):
        if bool((gain == 1.0).all()):
            return images
        gain = gain.view(-1, *([1] * (images.dim() - 1)))
    elif gain == 1.0:
        return images
    gained = (images.float() * gain).clamp(0.0, 255.0)
    return gained.round().to(torch.uint8) if images.dtype == torch.uint8 else gained


def pick_device(name: str = "auto") -> torch.device:
    """``auto``: CUDA when available, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity, not the machine's count)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def split(weights: Sequence[int], parts: int) -> list[range]:
    """``weights``' indices cut into at most ``parts`` contiguous, non-empty runs of about equal
    total weight (every item weighs at least 1)."""
    heavy = [max(1, weight) for weight in weights]
    share = sum(heavy) / max(1, min(parts, len(heavy)))
    runs: list[range] = []
    start, total = 0, 0
    for i, weight in enumerate(heavy):
        total += weight
        if total >= share * (len(runs) + 1) and len(runs) < parts - 1:
            runs.append(range(start, i + 1))
            start = i + 1
    if start < len(heavy):
        runs.append(range(start, len(heavy)))
    return runs


class VisionWorker:
    """Detects, embeds and grades the faces of batches of frames.

    Call it from one thread only: that thread owns the models and the device.
    ``embedder`` is a name from :data:`~stream.vision.embedders.EMBEDDERS`; ``detector`` any
    :class:`~stream.vision.detect.FaceDetector` (default: MTCNN at ``detect_width``, looking for
    faces of ``min_face_px``, frame pixels). ``backend`` runs the networks on torch or on ONNX
    Runtime (``auto``: the faster one measured on the device; see :mod:`stream.vision.backends`).
    ``full_detection_every_s`` (``None``: off): a source's frames skip the full-frame detector
    (the PNet pyramid, most of the models' time) for up to this long after it ran, while each of
    its faces is found again near where it was on the source's frame before (at most
    :data:`NEAR_WITHIN_S` earlier) and nothing changed elsewhere in the picture; a face that
    came unnoticed is found this late.
    ``threads`` (CPU only; default: the cores this process may use): a batch's frames are
    detected, and its faces embedded, on that many threads side by side, and each ONNX network
    of the detector runs on that many (the embedder's on one). On a GPU one thread feeds the
    device.
    :meth:`submit` runs batches in the background, :attr:`concurrency` of them at once.
    """

    def __init__(self, *, embedder: str = OFFLINE, device: torch.device | None = None,
                 detect_width: int | None = 640, gate: QualityGate | None = None,
                 min_face_px: int = 40,
                 weights: Path | None = None, allow_download: bool = False,
                 detector: FaceDetector | None = None, backend: str = "auto",
                 full_detection_every_s: float | None = None, threads: int | None = None
                 ) -> None:
        self.device = device or pick_device()
        self.gate = gate or QualityGate()
        self.backend = backends.resolve(backend, self.device)
        self.threads = 1 if self.device.type != "cpu" else max(1, threads or usable_cores())
        self._pool = (ThreadPoolExecutor(self.threads, thread_name_prefix="models")
                      if self.threads > 1 else None)
        # On the CPU as many batches as threads are in the models at once, so that no core
        # waits for another's frame (the end of a batch, its identities); a GPU takes one big
        # batch at a time.
        self.concurrency = self.threads if self.device.type == "cpu" else 1
        self._batches = ThreadPoolExecutor(self.concurrency, thread_name_prefix="batches")
        # Each ONNX network of the detector may use as many: a batch of one source's frames is
        # detected frame by frame, the near search following its faces. (Torch's operations
        # keep the process's thread count: setting it here would set it for everything, the
        # seed baseline too.)
        net_threads = self.threads if self.device.type == "cpu" else None
        self.embedder: Embedder = load_embedder(embedder, self.device, weights=weights,
                                                allow_download=allow_download)
        if detector is None:
            detector = MtcnnDetector(
                self.device, detect_width=detect_width, min_face_px=min_face_px,
                nets=(backends.mtcnn_nets(self.device, threads=net_threads)
                      if self.backend == "onnx" else None),
                crops_per_call=backends.mtcnn_crops_per_call(self.backend, self.device))
        self.detector: FaceDetector = detector
        if self.backend == "onnx":
            # On the CPU the embedder runs on one thread: faces are already spread over the
            # worker's threads, and a second intra-op thread per call only contended with
            # detection (three alternating analyze runs, 2026-12-03: 5 % less CPU, the same
            # vectors bit for bit).
            self.embedder = backends.OnnxEmbedder(
                self.embedder, self.device, threads=1 if self.device.type == "cpu" else None)
        self._laplacian = _LAPLACIAN.to(self.device)
        self.full_detection_every_s = full_detection_every_s
        # Each source's last detections, by the source's sharpness baseline (one per source).
        self._seen: weakref.WeakKeyDictionary[SharpnessBaseline, _Seen] = (
            weakref.WeakKeyDictionary())

    @classmethod
    def from_settings(cls, engine: EngineSettings) -> VisionWorker:
        """The models as ``engine`` (the engine settings of analyze or run) asks; raises
        ``ModelError`` when weights are missing."""
        return cls(embedder=engine.embedder or default_embedder_name(),
                   device=pick_device(engine.device), detect_width=engine.detect_width,
                   gate=QualityGate.from_settings(engine), min_face_px=engine.min_face_px,
                   weights=engine.weights, allow_download=engine.allow_download,
                   backend=engine.backend,
                   full_detection_every_s=engine.full_detection_every_s,
                   threads=engine.cpu_threads)

    def submit(self, frames: list[Frame], skip_embedding: SkipRule | None = None,
               sharpness_baselines: Sequence[SharpnessBaseline] | None = None
               ) -> Future[list[FrameFaces]]:
        """:meth:`process` on a thread of the worker's own; at most :attr:`concurrency` batches
        run at once, the others wait their turn. Batches in the models at the same time must
        come from different sources (each source's frames follow the one before). A batch of
        one frame stays on its thread (the other threads take other batches: handing its faces
        to the pool as well gave four cameras 4.5-4.7 fps each against 4.9-5.0); a batch of
        several is spread over the pool."""
        return self._batches.submit(self.process, frames, skip_embedding, sharpness_baselines,
                                    side_by_side=len(frames) > 1 or self.concurrency == 1)

    def process(self, frames: list[Frame], skip_embedding: SkipRule | None = None,
                sharpness_baselines: Sequence[SharpnessBaseline] | None = None, *,
                side_by_side: bool = True) -> list[FrameFaces]:
        """Faces, embeddings and quality for each frame (frames of one size per call; they may
        come from several sources).

        ``skip_embedding`` may name faces whose embedding is not needed (it is called once per
        frame, after detection). On the CPU with ONNX Runtime a frame's faces are embedded on
        the worker's threads while the next frames are detected; otherwise after the batch's
        detection (on a GPU in one pass).
        ``sharpness_baselines``: each frame's source's (one object per source), for the
        relative blur gate; they also name the sources, whose frames may then skip the
        full-frame detector (see ``full_detection_every_s``). Calls from several threads at
        once must be about different sources. ``side_by_side=False``: all on the calling
        thread (the worker's other threads run other batches).
        """
        baselines = sharpness_baselines or [SharpnessBaseline() for _ in frames]
        wanted: list[npt.NDArray[np.bool_]] = [np.zeros(0, np.bool_)] * len(frames)
        queued: list[tuple[list[int], Future[_Embedded] | _Embedded]] = []  # frames, their part
        # ONNX Runtime's threads sleep when idle, so the pool embeds one frame's faces while
        # this thread detects the next. Torch's OpenMP threads spin: beside them detection got
        # slower (speed benchmark: 17 s against 12.6), so with torch, and on a GPU (one pass
        # for the whole batch), the faces are embedded after the batch's detection.
        pool = self._pool if side_by_side else None
        overlap = pool is not None and self.backend == "onnx"
        later: dict[int, _Job] = {}
        with torch.inference_mode():
            small, source_width = self._detection_batch(frames)
            gains = exposure_gains(small)

            def queue(jobs: dict[int, _Job]) -> None:
                """The jobs (by frame index) on the pool's threads, in runs of equal faces."""
                indices = list(jobs)
                for run in split([len(jobs[i][1]) for i in indices], self.threads):
                    part = [jobs[indices[k]] for k in run]
                    queued.append(([indices[k] for k in run],
                                   pool.submit(self._embed_in_pool, part)
                                   if pool is not None else self._embed(part)))

            def embed_soon(wave: dict[int, Faces]) -> None:
                jobs = {}
                for i, faces in wave.items():
                    wanted[i] = (~skip_embedding(frames[i], faces) if skip_embedding is not None
                                 else np.ones(len(faces), np.bool_))
                    if wanted[i].any():
                        jobs[i] = (frames[i], faces.select(wanted[i]), float(gains[i]))
                if overlap:
                    queue(jobs)
                else:
                    later.update(jobs)

            found = self._detect(frames, apply_gain(small, gains), source_width, baselines,
                                 embed_soon, pool=pool)
            if later:
                queue(dict(sorted(later.items())))
            parts = [(indices, part.result() if isinstance(part, Future) else part)
                     for indices, part in queued]
        dim = self.embedder.dim
        by_frame: dict[int, _Embedded] = {}
        for indices, (vectors, sharpness, brightness) in parts:
            start = 0
            for i in indices:
                end = start + int(wanted[i].sum())
                by_frame[i] = vectors[start:end], sharpness[start:end], brightness[start:end]
                start = end
        nothing: _Embedded = (np.zeros((0, dim), np.float32), np.zeros(0, np.float32),
                              np.zeros(0, np.float32))
        results = []
        for i, (frame, faces, baseline) in enumerate(zip(frames, found, baselines, strict=True)):
            mask = wanted[i]
            vectors, sharpness, brightness = by_frame.get(i, nothing)
            full_vectors = np.zeros((len(faces), dim), np.float32)
            full_sharp = np.zeros(len(faces), np.float32)
            full_bright = np.zeros(len(faces), np.float32)
            full_vectors[mask], full_sharp[mask], full_bright[mask] = vectors, sharpness, brightness
            typical = baseline.update(sharpness)
            results.append(self._frame_faces(frame, faces, vectors=full_vectors, embedded=mask,
                                             sharpness=full_sharp, brightness=full_bright,
                                             typical_sharpness=typical))
        return results

    def _detect(self, frames: list[Frame], images: torch.Tensor, source_width: int | None,
                baselines: Sequence[SharpnessBaseline],
                on_wave: Callable[[dict[int, Faces]], None], *, pool: ThreadPoolExecutor | None
                ) -> list[Faces]:
        """The faces of each frame: near its source's latest faces where that is enough (see
        ``full_detection_every_s``), else by the full-frame detector. A source's frames follow
        each other, so the k-th frame of every source goes in the k-th pass; ``on_wave`` gets
        each pass's faces (by frame index) as soon as they are found."""
        found: list[Faces | None] = [None] * len(frames)
        cells = grey_cells(images)
        scale = frames[0].width / images.shape[3]
        passes: dict[int, list[int]] = {}
        counts: Counter[int] = Counter()
        for i, baseline in enumerate(baselines):
            # Without the near search every frame gets a full detection: one pass.
            passes.setdefault(counts[id(baseline)] if self.full_detection_every_s else 0,
                              []).append(i)
            counts[id(baseline)] += 1
        for wave in passes.values():
            near = [i for i in wave if self._may_skip(frames[i], cells[i], baselines[i], scale)]
            if near and isinstance(self.detector, NearDetector):
                before = [self._seen[baselines[i]].latest for i in near]
                after = self.detector.detect_near(images[near], before,
                                                  source_width=source_width)
                for i, old, new in zip(near, before, after, strict=True):
                    if found_again(old, new):
                        seen = self._seen[baselines[i]]
                        found[i] = seen.latest = new
                        seen.latest_t = frames[i].t
            full = [i for i in wave if found[i] is None]
            if full:
                detected = self._parallel(
                    lambda part: self.detector.detect(images[part], source_width=source_width),
                    full, [1] * len(full), pool)
                for i, faces in zip(full, detected, strict=True):
                    found[i] = faces
                    self._seen[baselines[i]] = _Seen(frames[i].t, cells[i], faces, faces,
                                                     frames[i].t)
            on_wave({i: known for i in wave if (known := found[i]) is not None})
        return [faces if faces is not None else Faces.empty() for faces in found]

    def _parallel(self, work: Callable[[list[Item]], list[Result]], items: list[Item],
                  weights: Sequence[int], pool: ThreadPoolExecutor | None) -> list[Result]:
        """``work`` on contiguous runs of ``items`` of about equal ``weights``, on the threads of
        ``pool`` side by side (in this thread without one), its results in order."""
        runs = split(weights, self.threads)
        if pool is None or len(runs) <= 1:
            return work(items)

        def run(indices: range) -> list[Result]:
            with torch.inference_mode():
                return work([items[i] for i in indices])

        return [result for part in pool.map(run, runs) for result in part]

    def _embed(self, jobs: list[_Job]) -> _Embedded:
        """Vectors, sharpness and brightness of the faces of ``jobs`` (frame, faces, the gain
        its detection had), in order."""
        chips = torch.cat([apply_gain(self.embedder.chips(self._full_image(frame), faces), gain)
                           for frame, faces, gain in jobs])
        sharpness, brightness = self._grade(chips)
        return self.embedder.embed_chips(chips), sharpness, brightness

    def _embed_in_pool(self, jobs: list[_Job]) -> _Embedded:
        with torch.inference_mode():
            return self._embed(jobs)

    def _may_skip(self, frame: Frame, cells: torch.Tensor, baseline: SharpnessBaseline,
                  scale: float) -> bool:
        """Whether ``frame`` may be searched near its source's latest faces only."""
        seen = self._seen.get(baseline)
        every = self.full_detection_every_s
        if (seen is None or every is None or frame.discontinuity
                or not 0.0 <= frame.t - seen.t < every
                or frame.t - seen.latest_t > NEAR_WITHIN_S or seen.cells.shape != cells.shape):
            return False
        known = np.concatenate((seen.at_full.boxes, seen.latest.boxes)) / scale
        return not changed_elsewhere(cells, seen.cells, known)

    def _detection_batch(self, frames: list[Frame]) -> tuple[torch.Tensor, int | None]:
        """The detector's input (B, 3, h, w) uint8: the decoder's small copies when every frame
        has one (with the full width they came from), else the frames themselves."""
        copies = [frame.detect_image for frame in frames]
        if all(copy is not None for copy in copies):
            stacked = np.stack(copies)  # type: ignore[arg-type]
            source_width: int | None = frames[0].width
        else:
            stacked, source_width = np.stack([frame.image for frame in frames]), None
        return torch.from_numpy(stacked).to(self.device).permute(0, 3, 1, 2), source_width

    def _full_image(self, frame: Frame) -> torch.Tensor:
        """The full-size frame as a (3, H, W) uint8 tensor on the device (no float copy)."""
        return torch.from_numpy(frame.image).to(self.device).permute(2, 0, 1)

    def _grade(self, chips: torch.Tensor) -> tuple[FloatArray, FloatArray]:
        grey = (chips * torch.tensor([0.299, 0.587, 0.114], device=chips.device)
                .view(1, 3, 1, 1)).sum(1, keepdim=True)
        size = grey.shape[-1]
        centre = grey[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4]
        sharp = F.conv2d(centre, self._laplacian).flatten(1).var(dim=1)
        bright = centre.flatten(1).mean(dim=1)
        return sharp.cpu().numpy().astype(np.float32), bright.cpu().numpy().astype(np.float32)

    def _frame_faces(self, frame: Frame, faces: Faces, *, vectors: FloatArray,
                     embedded: npt.NDArray[np.bool_], sharpness: FloatArray,
                     brightness: FloatArray, typical_sharpness: float) -> FrameFaces:
        gate = self.gate
        min_sharpness = max(gate.min_sharpness, gate.relative_sharpness * typical_sharpness)
        boxes = faces.boxes
        sides = np.minimum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        height, width = frame.image.shape[:2]
        # A box reaching past the frame is a face cut by its edge: part of its chip is padding.
        inside = np.minimum(np.minimum(boxes[:, 0], boxes[:, 1]),
                            np.minimum(width - boxes[:, 2], height - boxes[:, 3]))
        checks = (("score", faces.scores, gate.min_score), ("size", sides, gate.min_face_px),
                  ("sharpness", sharpness, min_sharpness),
                  ("brightness", brightness, gate.min_brightness), ("edge", inside, 0.0))
        misses = tuple(None if not embedded[i] else next(
            (GateMiss(name, float(values[i]), float(limit)) for name, values, limit in checks
             if values[i] < limit), None) for i in range(len(faces)))
        good = embedded & np.array([miss is None for miss in misses], np.bool_)
        fair = good | (embedded & (faces.scores >= gate.min_score)
                       & (sides >= gate.recall_min_face_px)
                       & (sharpness >= max(gate.min_sharpness,
                                           gate.recall_relative_sharpness * typical_sharpness))
                       & (brightness >= gate.min_brightness))
        quality = (faces.scores * np.minimum(1.0, sides / 120.0)
                   * np.minimum(1.0, sharpness / max(typical_sharpness, 1e-6))).astype(np.float32)
        return FrameFaces(frame, faces, vectors, embedded, sharpness, brightness, good, quality,
                          fair, misses)
