"""Face detection behind a typed protocol: MTCNN from facenet-pytorch, batched over frames.

facenet-pytorch returns ``None``, object arrays and shapes that depend on the input; this adapter
always returns one :class:`~stream.types.Faces` per image, with float32 arrays.

:class:`MtcnnDetector` drives facenet's P-, R- and O-Net itself rather than calling facenet's
``detect_face``: same pyramid, thresholds, box arithmetic and crops, but the RNet/ONet crops are
cut for all candidates at once from an exact integer summed-area table of the 8-bit images
(facenet resizes each crop separately), the pyramid levels are shrunk from the 8-bit images
with antialiased bilinear filtering (an order of magnitude faster on the CPU than facenet's area
averaging of float images, with the same faces found on the benchmarks), and the networks run
on channels-last tensors. Everything stays on the device until the final per-image NMS.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F  # noqa: N812

from stream.types import Faces

if TYPE_CHECKING:
    from facenet_pytorch import MTCNN

# MTCNN's input normalisation: (x - 127.5) / 128.
_MEAN = 127.5
_INV_STD = 0.0078125
# A network of the cascade: images in, its outputs out (a torch module, or an ONNX session).
Net = Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
# PNet's output grid: one cell every 2 pixels, each looking at a 12-pixel window.
_STRIDE = 2
_CELL = 12
# Each pyramid level is this much smaller than the one before: facenet's default, copied so that
# the ONNX path need not load facenet; detect_reference uses facenet's own, so the comparison with
# facenet (tests/unit/test_detect.py) fails if the two part.
_FACTOR = 0.709
# Boxes the CPU's NMS compares with all later ones at a time (bounds its memory).
_NMS_BLOCK = 256
# facenet's crops per R- and O-Net call (bounds GPU memory).
FACENET_CROPS_PER_CALL = (256, 64)


class FaceDetector(Protocol):
    """Finds faces in a batch of same-sized images.

    The seam between :class:`~stream.vision.executor.VisionWorker` and a detector;
    :class:`MtcnnDetector` is the one there is.
    """

    # The width it detects at (``None``: full frames), so decoders can make it small copies.
    detect_width: int | None

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        """One :class:`Faces` per image of ``images`` (B, 3, H, W) uint8 (or float 0..255), in
        the pixels of the frames; ``source_width``: the images are copies shrunk from frames that
        wide."""
        ...


@runtime_checkable
class NearDetector(FaceDetector, Protocol):
    """A detector that can also look only around faces it was told of (a much cheaper pass)."""

    def detect_near(self, images: torch.Tensor, near: Sequence[Faces], *,
                    source_width: int | None = None) -> list[Faces]:
        """One :class:`Faces` per image, found only near that image's ``near`` faces (frame
        pixels)."""
        ...


class MtcnnDetector:
    """MTCNN (P-, R-, O-Net) with weights shipped in the facenet-pytorch wheel.

    ``detect_width`` downscales each batch before detection (boxes and landmarks are mapped back);
    ``min_face_px`` is the smallest face to look for, in pixels of the full-size frame;
    ``nets`` replace facenet's torch P-, R- and O-Net (by their ONNX exports, say);
    ``crops_per_call``: how many crops R- and O-Net take per call (the results do not depend on
    it; the speed does).
    """

    def __init__(self, device: torch.device, *, detect_width: int | None = 640,
                 min_face_px: int = 40,
                 # PNet at 0.7 rather than facenet's 0.6: a third fewer candidates for R/ONet,
                 # no face lost on the benchmarks.
                 thresholds: tuple[float, float, float] = (0.7, 0.7, 0.7),
                 nets: tuple[Net, Net, Net] | None = None,
                 crops_per_call: tuple[int, int] = FACENET_CROPS_PER_CALL) -> None:
        if detect_width is not None and detect_width < 64:
            raise ValueError(f"detect_width must be at least 64 pixels, got {detect_width}")
        if min_face_px < 12:
            raise ValueError(f"min_face_px must be at least 12 pixels, got {min_face_px}")
        self.device = device
        self.detect_width = detect_width
        self.min_face_px = min_face_px
        self.thresholds = list(thresholds)
        self.crops_per_call = crops_per_call
        # facenet's torch networks are loaded only when they run: importing facenet-pytorch
        # imports torchvision, seconds of start-up the ONNX backend does without.
        self.nets: tuple[Net, Net, Net] = nets or (self.facenet.pnet, self.facenet.rnet,
                                                   self.facenet.onet)

    @functools.cached_property
    def facenet(self) -> MTCNN:
        """facenet-pytorch's MTCNN, with the torch P-, R- and O-Net."""
        from facenet_pytorch import MTCNN

        return MTCNN(keep_all=True, device=self.device).eval()

    def detect(self, images: torch.Tensor, *, source_width: int | None = None) -> list[Faces]:
        """One :class:`Faces` per image of ``images`` (B, 3, H, W) uint8 or float 0..255, in the
        pixels of the frames; ``source_width``: the images are copies shrunk from frames that
        wide (the decoder made them), so no further downscaling happens here.

        8-bit images (what decoders give) take the fast path: an exact integer summed-area table,
        and pyramid levels shrunk with antialiased bilinear filtering. Float images follow
        facenet exactly: area averaging and a float64 table."""
        if images.shape[0] == 0:
            return []
        small, scale, min_size = self._prepare(images, source_width)
        if small.dtype != torch.uint8:
            small = small.float()
        with torch.inference_mode():
            found = _detect_batch(small.to(self.device), min_size, self.nets,
                                  self.thresholds, _FACTOR,
                                  crops_per_call=self.crops_per_call)
        return [faces.scaled(scale) if scale != 1.0 else faces for faces in found]

    def detect_near(self, images: torch.Tensor, near: Sequence[Faces], *,
                    source_width: int | None = None) -> list[Faces]:
        """Like :meth:`detect`, but only looking around ``near`` (each image's faces on a frame
        just before it, in the pixels of the frames): R- and O-Net on boxes around them, shifted
        and resized by up to a quarter of their side, instead of the PNet pyramid over the whole
        image. A face far from all of ``near`` is not found, so callers still run :meth:`detect`
        at bounded intervals."""
        if images.shape[0] == 0:
            return []
        small, scale, _ = self._prepare(images, source_width)
        boxes, inds = _around(near, scale, self.device)
        if len(boxes) == 0:
            return [Faces.empty() for _ in range(images.shape[0])]
        if small.dtype != torch.uint8:
            small = small.float()
        with torch.inference_mode():
            found = _refine(small.to(self.device), boxes, inds, self.nets, self.thresholds,
                            crops_per_call=self.crops_per_call, around=True)
        return [faces.scaled(scale) if scale != 1.0 else faces for faces in found]

    def detect_reference(self, images: torch.Tensor) -> list[Faces]:
        """The same detection through facenet-pytorch's own ``detect_face``, for comparisons."""
        from facenet_pytorch.models.utils.detect_face import detect_face

        if images.shape[0] == 0:
            return []
        small, scale, min_size = self._prepare(images.float())
        with torch.inference_mode():
            batch_boxes, batch_points = detect_face(
                small.permute(0, 2, 3, 1), min_size, self.facenet.pnet, self.facenet.rnet,
                self.facenet.onet, self.thresholds, self.facenet.factor, self.device)
        result = []
        for boxes, points in zip(batch_boxes, batch_points, strict=True):
            found = np.asarray(boxes, dtype=np.float32).reshape(-1, 5)
            landmarks = np.asarray(points, dtype=np.float32).reshape(-1, 5, 2)
            faces = Faces(np.ascontiguousarray(found[:, :4]), np.ascontiguousarray(found[:, 4]),
                          landmarks)
            result.append(faces.scaled(scale) if scale != 1.0 else faces)
        return result

    def _prepare(self, images: torch.Tensor, source_width: int | None = None
                 ) -> tuple[torch.Tensor, float, float]:
        """Downsize to ``detect_width``; return the images, the scale back, the minimum face."""
        width = images.shape[3]
        scale = 1.0
        if source_width is not None:
            scale = source_width / width
        elif self.detect_width is not None and width > self.detect_width:
            scale = width / self.detect_width
            height = round(images.shape[2] / scale)
            # Area averaging, as the decoders shrink frames for the detector; 8-bit stays 8-bit.
            shrunk = F.interpolate(images.float(), size=(height, self.detect_width), mode="area")
            images = (shrunk.round().to(torch.uint8) if images.dtype == torch.uint8
                      else shrunk)
        # MTCNN's smallest face is in detection pixels; never below its 12 px receptive field.
        return images, scale, max(12.0, self.min_face_px / scale)


def _shrink(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """``images`` resized to ``size`` (height, width): 8-bit ones with antialiased bilinear
    filtering on channels-last (torch's fast 8-bit path), float ones by area averaging."""
    if images.dtype == torch.uint8:
        return F.interpolate(images.contiguous(memory_format=torch.channels_last), size=size,
                             mode="bilinear", antialias=True)
    return F.interpolate(images, size=size, mode="area")


def pyramid_scales(height: int, width: int, min_size: float, factor: float) -> list[float]:
    """facenet's image pyramid: from ``12 / min_size`` down by ``factor`` while the short side
    still holds a 12-pixel window (so no level only finds faces larger than the frame)."""
    m = 12.0 / min_size
    minl = min(height, width) * m
    scales = []
    scale = m
    while minl >= 12:
        scales.append(scale)
        scale *= factor
        minl *= factor
    return scales


def _detect_batch(imgs: torch.Tensor, min_size: float, nets: tuple[Net, Net, Net],
                  thresholds: list[float], factor: float, *,
                  crops_per_call: tuple[int, int]) -> list[Faces]:
    """facenet's ``detect_face`` on (B, 3, H, W) uint8 or float32 images (0..255), batched: one
    Faces per image."""
    boxes, inds = _propose(imgs, min_size, nets[0], thresholds[0], factor)
    return _refine(imgs, boxes, inds, nets, thresholds, crops_per_call=crops_per_call)


# Where detect_near looks around a known face: its square box, shifted by a fifth of its side
# each way, or resized (dx, dy, size); RNet's regression takes it the rest of the way.
_AROUND = ((0.0, 0.0, 1.0), (-0.2, 0.0, 1.0), (0.2, 0.0, 1.0), (0.0, -0.2, 1.0),
           (0.0, 0.2, 1.0), (0.0, 0.0, 0.8), (0.0, 0.0, 1.25))


def _around(near: Sequence[Faces], scale: float, device: torch.device
            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Square candidate boxes around each image's ``near`` faces (frame pixels; the detection
    images are ``scale`` times smaller) as (N, 6) rows: x1 y1 x2 y2, score 1, which known face;
    and their image index."""
    rows = [(faces.boxes / scale, b) for b, faces in enumerate(near) if len(faces)]
    if not rows:
        return torch.zeros((0, 6), device=device), torch.zeros(0, dtype=torch.long, device=device)
    known = torch.from_numpy(np.concatenate([boxes for boxes, _ in rows])).float().to(device)
    inds = torch.cat([torch.full((len(boxes),), b, dtype=torch.long) for boxes, b in rows])
    square = _rerec(torch.cat((known, torch.ones_like(known[:, :1])), dim=1))
    side = square[:, 2] - square[:, 0]
    cx, cy = square[:, 0] + side / 2, square[:, 1] + side / 2
    grid = torch.tensor(_AROUND, device=device)
    centre_x = cx[:, None] + grid[None, :, 0] * side[:, None]
    centre_y = cy[:, None] + grid[None, :, 1] * side[:, None]
    half = grid[None, :, 2] * side[:, None] / 2
    boxes = torch.stack((centre_x - half, centre_y - half, centre_x + half, centre_y + half,
                         torch.ones_like(half)), dim=2).reshape(-1, 5)
    origin = torch.arange(len(known), device=device).repeat_interleave(len(grid))
    return (torch.cat((boxes, origin[:, None].float()), dim=1),
            inds.to(device).repeat_interleave(len(grid)))


def _refine(imgs: torch.Tensor, boxes: torch.Tensor, inds: torch.Tensor,
            nets: tuple[Net, Net, Net], thresholds: list[float], *,
            crops_per_call: tuple[int, int], around: bool = False
            ) -> list[Faces]:
    """R- and O-Net on candidate boxes (N, 5) of images ``inds``, ``crops_per_call`` crops
    at a time: one Faces per image.
    ``around``: the boxes are (N, 6), the last column the known face each is around; only the
    best of each face's boxes after RNet goes on to ONet, not all that do not overlap much."""
    _, rnet, onet = nets
    batch = imgs.shape[0]
    if len(boxes) == 0:
        return [Faces.empty() for _ in range(batch)]
    # Second stage: RNet on 24x24 crops of the squared PNet proposals.
    boxes, inds, crops, table = _crops(imgs, None, boxes, inds, 24)
    if len(boxes) == 0:
        return [Faces.empty() for _ in range(batch)]
    reg, probs = _chunked(rnet, crops, crops_per_call[0])
    score = probs[:, 1]
    keep = score > thresholds[1]
    groups = boxes[keep, 5].long() if around else inds[keep]
    boxes = torch.cat((boxes[keep, :4], score[keep, None]), dim=1)
    inds, reg = inds[keep], reg[keep]
    # Around known faces, any overlap suppresses: the best box of each face only.
    pick = batched_nms(boxes[:, :4], boxes[:, 4], groups, 0.0 if around else 0.7)
    boxes = _rerec(_bbreg(boxes[pick], reg[pick]))
    inds = inds[pick]

    # Third stage: ONet on 48x48 crops gives the final score, box and landmarks.
    boxes, inds, crops, table = _crops(imgs, table, boxes, inds, 48)
    if len(boxes) == 0:
        return [Faces.empty() for _ in range(batch)]
    reg, marks, probs = _chunked(onet, crops, crops_per_call[1])
    score = probs[:, 1]
    keep = score > thresholds[2]
    boxes = torch.cat((boxes[keep, :4], score[keep, None]), dim=1)
    inds, reg, marks = inds[keep], reg[keep], marks[keep]
    box_w = (boxes[:, 2] - boxes[:, 0] + 1)[:, None]
    box_h = (boxes[:, 3] - boxes[:, 1] + 1)[:, None]
    points = torch.stack((box_w * marks[:, :5] + boxes[:, 0:1] - 1,
                          box_h * marks[:, 5:10] + boxes[:, 1:2] - 1), dim=2)
    boxes = _bbreg(boxes, reg)

    # One transfer to the host; the last NMS is over a few boxes per image.
    boxes_np = boxes.float().cpu().numpy()
    points_np = points.float().cpu().numpy()
    inds_np = inds.cpu().numpy()
    result = []
    for b in range(batch):
        mine = np.flatnonzero(inds_np == b)
        pick_np = mine[_greedy_nms(boxes_np[mine, :4], boxes_np[mine, 4], inds_np[mine], 0.7,
                                   facenet_min=True)]
        result.append(Faces(np.ascontiguousarray(boxes_np[pick_np, :4]),
                            np.ascontiguousarray(boxes_np[pick_np, 4]),
                            np.ascontiguousarray(points_np[pick_np])))
    return result


def _chunked(net: Net, crops: torch.Tensor, chunk: int) -> tuple[torch.Tensor, ...]:
    """``net`` over ``crops`` in chunks of ``chunk``: on the CPU R/ONet get slower per crop on
    big batches (their activations fall out of cache), and chunks bound GPU memory."""
    outs = [net(crops[i:i + chunk]) for i in range(0, len(crops), chunk)]
    return tuple(torch.cat(parts) for parts in zip(*outs, strict=True))


def _propose(imgs: torch.Tensor, min_size: float, pnet: Net, threshold: float,
             factor: float) -> tuple[torch.Tensor, torch.Tensor]:
    """PNet over the pyramid: squared, regressed candidate boxes (N, 5) and their image index."""
    batch, (h, w) = imgs.shape[0], imgs.shape[2:]
    all_boxes: list[torch.Tensor] = []
    all_inds: list[torch.Tensor] = []
    for scale in pyramid_scales(h, w, min_size, factor):
        level = _shrink(imgs, (int(h * scale + 1), int(w * scale + 1)))
        reg, probs = pnet(_normalise(level).contiguous(memory_format=torch.channels_last))
        boxes, inds = _generate_boxes(reg, probs[:, 1], scale, threshold)
        all_boxes.append(boxes)
        all_inds.append(inds)
    boxes = torch.cat(all_boxes)
    inds = torch.cat(all_inds)
    levels = torch.cat([torch.full_like(part, number) for number, part in enumerate(all_inds)])
    # facenet's NMS within each level and image, for all levels in one call (one call per level
    # cost more than the NMS itself); the kept boxes in level order, each level's best first,
    # as level by level.
    pick = batched_nms(boxes[:, :4], boxes[:, 4], levels * batch + inds, 0.5)
    pick = pick[torch.sort(levels[pick], stable=True).indices]
    boxes, inds = boxes[pick], inds[pick]
    pick = batched_nms(boxes[:, :4], boxes[:, 4], inds, 0.7)
    boxes, inds = boxes[pick], inds[pick]
    # PNet's regression is relative to the width without facenet's usual +1.
    size = boxes[:, 2:4] - boxes[:, 0:2]
    corners = boxes[:, 0:4] + boxes[:, 5:9] * torch.cat((size, size), dim=1)
    return _rerec(torch.cat((corners, boxes[:, 4:5]), dim=1)), inds


def _normalise(images: torch.Tensor) -> torch.Tensor:
    """MTCNN's input: ``(x - 127.5) / 128`` as float32."""
    if images.is_floating_point():
        return ((images - _MEAN) * _INV_STD).float()
    # 8-bit images: in place on their float copy (the same float32 arithmetic, no temporaries).
    return images.float().sub_(_MEAN).mul_(_INV_STD)


def _generate_boxes(reg: torch.Tensor, probs: torch.Tensor, scale: float, threshold: float,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """PNet cells scoring at least ``threshold`` as (N, 9) rows: x1 y1 x2 y2 score dx1..dy2."""
    where = (probs >= threshold).nonzero()
    image, y, x = where.unbind(1)
    score = probs[image, y, x]
    offsets = reg.permute(0, 2, 3, 1)[image, y, x]
    cell = torch.stack((x, y), dim=1).to(reg.dtype)
    q1 = ((_STRIDE * cell + 1) / scale).floor()
    q2 = ((_STRIDE * cell + _CELL) / scale).floor()
    return torch.cat((q1, q2, score[:, None], offsets), dim=1), image


def _bbreg(boxes: torch.Tensor, reg: torch.Tensor) -> torch.Tensor:
    """Apply R/ONet's box regression (relative to the inclusive box size) to (N, 5) boxes."""
    w = boxes[:, 2] - boxes[:, 0] + 1
    h = boxes[:, 3] - boxes[:, 1] + 1
    size = torch.stack((w, h, w, h), dim=1)
    return torch.cat((boxes[:, :4] + reg[:, :4] * size, boxes[:, 4:]), dim=1)


def _rerec(boxes: torch.Tensor) -> torch.Tensor:
    """Square (N, 5) boxes around their centres, on the longer side."""
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    side = torch.maximum(w, h)
    x1 = boxes[:, 0] + w * 0.5 - side * 0.5
    y1 = boxes[:, 1] + h * 0.5 - side * 0.5
    return torch.stack((x1, y1, x1 + side, y1 + side, boxes[:, 4]), dim=1)


@dataclass(frozen=True)
class _SummedArea:
    """Summed-area table of the window ``x0 <= x < x1``, ``y0 <= y < y1`` of every image of a
    (B, 3, H, W) batch, as (B * (y1-y0+1) * (x1-x0+1), 3) rows: int32 for uint8 images (exact
    while 255 * H * W < 2^31, and several times faster on the CPU), else float64 so that
    differences of large sums stay exact. The crops' sums are those of the whole images'
    table: only the pixels a crop covers enter it."""

    rows: torch.Tensor
    x0: int
    y0: int
    x1: int
    y1: int

    @classmethod
    def of(cls, imgs: torch.Tensor, x0: int, y0: int, x1: int, y1: int) -> _SummedArea:
        """The table of that window of ``imgs``."""
        exact = torch.int32 if imgs.dtype == torch.uint8 else torch.float64
        window = imgs[:, :, y0:y1, x0:x1].permute(0, 2, 3, 1).to(exact)
        padded = F.pad(window, (0, 0, 1, 0, 1, 0))
        return cls(padded.cumsum_(2).cumsum_(1).reshape(-1, imgs.shape[1]), x0, y0, x1, y1)

    def covers(self, x0: int, y0: int, x1: int, y1: int) -> bool:
        """Whether the window ``x0..x1``, ``y0..y1`` lies inside this table's."""
        return self.x0 <= x0 and self.y0 <= y0 and x1 <= self.x1 and y1 <= self.y1


def _crops(imgs: torch.Tensor, table: _SummedArea | None, boxes: torch.Tensor,
           inds: torch.Tensor, size: int
           ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, _SummedArea | None]:
    """Channels-last (N, 3, size, size) crops of the boxes in the (B, 3, H, W) ``imgs``, as
    facenet cuts them, with the boxes and image indices that were kept, and the summed-area
    table they were cut from: ``table`` where it covers every box, else one of the window the
    boxes span (near known faces that is a small part of the frame).

    facenet truncates each box to whole pixels, clips it to the image (no zero padding: a box
    over the edge is squeezed), and area-resizes the rest, which is ``adaptive_avg_pool2d``: bin
    ``i`` of ``n`` pixels averages pixels ``floor(i n / size)`` to ``ceil((i + 1) n / size)``.
    Boxes left with no pixels (facenet would fail on them) are dropped.
    """
    h, w = imgs.shape[2:]
    # int32 pixel and row numbers (a batch's table has far fewer than 2^31 rows): the gathers
    # below take a third less time with them than with int64 ones.
    corners = boxes[:, :4].trunc().int()
    x0 = corners[:, 0].clamp(min=1) - 1
    y0 = corners[:, 1].clamp(min=1) - 1
    x1 = corners[:, 2].clamp(max=w)
    y1 = corners[:, 3].clamp(max=h)
    valid = (x1 > x0) & (y1 > y0)
    if not bool(valid.all()):
        boxes, inds = boxes[valid], inds[valid]
        x0, y0, x1, y1 = x0[valid], y0[valid], x1[valid], y1[valid]
    channels = imgs.shape[1]
    if len(boxes) == 0:
        return boxes, inds, torch.zeros((0, channels, size, size), device=imgs.device), table
    # One transfer from the device for the window, not one per corner.
    left, top, right, bottom = torch.stack((x0.min(), y0.min(), x1.max(), y1.max())).tolist()
    if table is None or not table.covers(left, top, right, bottom):
        table = _SummedArea.of(imgs, left, top, right, bottom)
    width, height = table.x1 - table.x0, table.y1 - table.y0
    steps = torch.arange(size + 1, dtype=torch.int32, device=boxes.device)

    def edges(start: torch.Tensor, stop: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        n = (stop - start)[:, None]
        lo = start[:, None] + torch.div(steps[:-1] * n, size, rounding_mode="floor")
        hi = start[:, None] + torch.div(steps[1:] * n + size - 1, size, rounding_mode="floor")
        return lo, hi

    # Row numbers into the flattened table: image, then row, then column, from its window.
    first_row = inds.int() * (height + 1) - table.y0
    ylo, yhi = edges(y0 + first_row, y1 + first_row)
    xlo, xhi = edges(x0 - table.x0, x1 - table.x0)
    ylo, yhi = ylo[:, :, None] * (width + 1), yhi[:, :, None] * (width + 1)
    xlo, xhi = xlo[:, None, :], xhi[:, None, :]

    def at(rows: torch.Tensor) -> torch.Tensor:
        return table.rows.index_select(0, rows.reshape(-1))

    total = at(yhi + xhi) - at(ylo + xhi) - at(yhi + xlo) + at(ylo + xlo)
    area = ((yhi - ylo) // (width + 1) * (xhi - xlo)).reshape(-1, 1)
    crops = _normalise(total / area).reshape(len(boxes), size, size, channels)
    return boxes, inds, crops.permute(0, 3, 1, 2), table


def batched_nms(boxes: torch.Tensor, scores: torch.Tensor, groups: torch.Tensor,
                threshold: float) -> torch.Tensor:
    """Greedy non-maximum suppression within each group, as torchvision's ``batched_nms``: the
    indices of the (N, 4) ``boxes`` kept, best score first; a box goes when its IoU with a
    better one kept in its group is over ``threshold``. On a GPU it is torchvision's, the boxes
    staying there; on the CPU a numpy one that keeps the same boxes, so that the CPU path never
    imports torchvision (2.3 s of every start-up on the 2-core machine)."""
    if boxes.device.type != "cpu":
        from torchvision.ops import batched_nms as on_device

        kept: torch.Tensor = on_device(boxes, scores, groups, threshold)
        return kept
    return torch.from_numpy(_greedy_nms(boxes.float().numpy(), scores.float().numpy(),
                                        groups.numpy(), threshold))


def _greedy_nms(boxes: npt.NDArray[np.float32], scores: npt.NDArray[np.float32],
                groups: npt.NDArray[np.int64], threshold: float, *, facenet_min: bool = False
                ) -> npt.NDArray[np.int64]:
    """Greedy NMS within each group in numpy, best score first: the overlaps of a block of
    boxes with the later ones of its groups at once, then a pass down the block. The overlap is
    the IoU (torchvision's arithmetic, in float32), or with ``facenet_min`` facenet's "Min"
    (sizes +1 pixel, intersection over the smaller area), the cascade's last NMS. Of equal
    scores, torchvision's comes first in the order given; facenet's, the last (ONet gives equal
    scores to neighbouring boxes; a box differs then by a fraction of a pixel)."""
    by_score = np.argsort(scores)[::-1] if facenet_min else np.argsort(-scores, kind="stable")
    # Each group's boxes side by side, in score order (the sort by group is stable), so that a
    # block is compared with the rest of its own groups only, not with every later box (a
    # batch of frames' pyramid levels are dozens of groups).
    by_group = np.argsort(groups[by_score], kind="stable")  # places in the score order
    order = by_score[by_group]
    x1, y1, x2, y2 = (np.ascontiguousarray(boxes[order, k]) for k in range(4))
    group = groups[order]
    one = np.float32(1 if facenet_min else 0)
    area = (x2 - x1 + one) * (y2 - y1 + one)
    alive = np.ones(len(order), np.bool_)
    zero, bar = np.float32(0), np.float64(threshold)
    for start in range(0, len(order), _NMS_BLOCK):
        stop = min(start + _NMS_BLOCK, len(order))
        end = int(np.searchsorted(group, group[stop - 1], side="right"))
        block, later = slice(start, stop), slice(start, end)
        width = np.maximum(zero, np.minimum(x2[block, None], x2[None, later])
                           - np.maximum(x1[block, None], x1[None, later]) + one)
        height = np.maximum(zero, np.minimum(y2[block, None], y2[None, later])
                            - np.maximum(y1[block, None], y1[None, later]) + one)
        inter = width * height
        base = (np.minimum(area[block, None], area[None, later]) if facenet_min
                else area[block, None] + area[None, later] - inter)
        over = (inter / base > bar) & (group[block, None] == group[None, later])
        for row in range(len(over)):
            if alive[start + row]:
                alive[start + row + 1:end] &= ~over[row, row + 1:]
    # The kept boxes best first: their places in the score order, sorted.
    return by_score[np.sort(by_group[alive])].astype(np.int64)

