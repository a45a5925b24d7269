"""Synthetic ground-truth videos built from real face photos.

Head crops ("sprites") of the faces in the face-api sample photos are pasted onto a textured
background and moved, scaled, lit, rolled, blurred, dimmed and occluded over time. Because every
placement is known, each frame comes with the exact list of visible faces and their boxes.

``python -m benchmarks.synthetic NAME OUTDIR`` renders one scenario and prints the video path.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from functools import cache
from pathlib import Path
from typing import Any, Literal

import av
import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw, ImageFilter

Box = tuple[float, float, float, float]
Point = tuple[float, float, float]

TRUTH_SCHEMA = "facestream.truth/1"
# Bump when rendering changes so cached videos are rebuilt.
RENDER_VERSION = 1
REFERENCE_HEIGHT = 540
# Sprites are cached at this face height; frames only ever scale them down.
SPRITE_FACE_HEIGHT = 200
# A face is on screen when at least this share of its box is inside the frame and uncovered.
MIN_VISIBLE = 0.6
MERGE_GAP_S = 1.0
DEFAULT_PRESET = "veryfast"


@dataclass(frozen=True)
class SourceFace:
    """A face in one of the sample photos: file name and MTCNN box in full-resolution pixels."""

    photo: str
    box: tuple[int, int, int, int]


# Identities checked by eye. Every face is a different person except p03, the woman who appears
# in sample1 and sample3. p05 (sample2, face 1) is a profile and is left out of the scenarios;
# p21 (sample2, face 2) looks down, eyes almost closed (MTCNN scores her 0.92 in the photo).
PERSONS: dict[str, tuple[SourceFace, ...]] = {
    "p01": (SourceFace("sample1.jpg", (412, 359, 594, 594)),),
    "p02": (SourceFace("sample1.jpg", (827, 424, 1032, 661)),),
    "p03": (
        SourceFace("sample1.jpg", (1484, 212, 1683, 426)),
        SourceFace("sample3.jpg", (1057, 201, 1288, 508)),
    ),
    "p04": (SourceFace("sample2.jpg", (1441, 169, 1634, 392)),),
    "p05": (SourceFace("sample2.jpg", (293, 133, 530, 445)),),
    "p06": (SourceFace("sample3.jpg", (1493, 289, 1691, 572)),),
    "p07": (SourceFace("sample3.jpg", (583, 324, 794, 601)),),
    "p08": (SourceFace("sample4.jpg", (979, 188, 1156, 411)),),
    "p09": (SourceFace("sample4.jpg", (1276, 155, 1426, 375)),),
    "p10": (SourceFace("sample4.jpg", (659, 78, 829, 293)),),
    "p11": (SourceFace("sample4.jpg", (264, 203, 454, 446)),),
    "p12": (SourceFace("sample5.jpg", (1113, 209, 1288, 436)),),
    "p13": (SourceFace("sample5.jpg", (598, 417, 764, 661)),),
    "p14": (SourceFace("sample5.jpg", (787, 110, 952, 328)),),
    "p15": (SourceFace("sample5.jpg", (1403, 395, 1604, 668)),),
    "p16": (SourceFace("sample5.jpg", (356, 867, 571, 1165)),),
    "p17": (SourceFace("sample6.jpg", (260, 491, 468, 770)),),
    "p18": (SourceFace("sample6.jpg", (1477, 254, 1690, 563)),),
    "p19": (SourceFace("sample6.jpg", (664, 329, 864, 635)),),
    "p20": (SourceFace("sample6.jpg", (1170, 305, 1377, 581)),),
    "p21": (SourceFace("sample2.jpg", (890, 231, 1075, 474)),),
}


@dataclass(frozen=True)
class Span:
    """One stretch of time [start, end) in which a person is on screen.

    The curves are spread evenly over the span and eased between their points: ``path`` holds
    (x, y, size), the face centre as fractions of the frame width and height and the face height
    as a fraction of the frame height; ``light`` multiplies the sprite's brightness; ``roll`` is
    the head roll in degrees, counter-clockwise. ``sprite`` picks the person's source photo.
    """

    start: float
    end: float
    path: tuple[Point, ...]
    sprite: int = 0
    light: tuple[float, ...] = (1.0,)
    roll: tuple[float, ...] = (0.0,)


@dataclass(frozen=True)
class Actor:
    """A person and the spans in which it is on screen. Later actors are drawn on top."""

    person: str
    spans: tuple[Span, ...]


@dataclass(frozen=True)
class Phase:
    """A whole-frame degradation over [start, end], ramped in and out over ``ramp`` seconds.

    ``blur``: Gaussian focus blur, ``amount`` is sigma in pixels at 540 lines (scaled with the
    frame height). ``dim``: ``amount`` is the brightness factor at full strength.
    """

    kind: Literal["blur", "dim"]
    start: float
    end: float
    amount: float
    ramp: float = 0.4


@dataclass(frozen=True)
class Bar:
    """An opaque full-height bar that sweeps across the frame between ``start`` and ``end``.

    ``width`` is a fraction of the frame width. The bar enters at one edge and leaves at the other.
    """

    start: float
    end: float
    width: float = 0.25
    leftward: bool = False
    colour: tuple[int, int, int] = (38, 40, 46)


@dataclass(frozen=True)
class Patch:
    """An opaque rectangle standing still over [start, end): a hand, a microphone, a sign.

    ``box`` is x1, y1, x2, y2 as fractions of the frame width and height; it hides what it
    covers from every face (a face under more than ``1 - MIN_VISIBLE`` of it is not on screen).
    """

    start: float
    end: float
    box: Box
    colour: tuple[int, int, int] = (196, 150, 120)


@dataclass(frozen=True)
class Scenario:
    """A synthetic video: who is on screen when and how, plus degradations and encoding."""

    name: str
    description: str
    duration_s: float
    actors: tuple[Actor, ...]
    width: int = 960
    height: int = 540
    fps: int = 25
    crf: int = 23
    phases: tuple[Phase, ...] = ()
    bars: tuple[Bar, ...] = ()
    seed: int = 0
    cuts: tuple[float, ...] = ()  # shot cuts: the background changes at each of these times
    # Out of the repr so the fingerprints (and cached videos) of scenarios without any stay.
    patches: tuple[Patch, ...] = field(default=(), repr=False)


@dataclass(frozen=True)
class TruthFace:
    """A face visible in a frame: the person label and the face box in frame pixels."""

    person: str
    box: Box


@dataclass(frozen=True)
class FrameTruth:
    """The faces visible in one frame (``index`` is 0-based, ``t`` in seconds)."""

    index: int
    t: float
    faces: tuple[TruthFace, ...]


@dataclass(frozen=True)
class GroundTruth:
    """What is on screen in every frame of a rendered scenario."""

    scenario: str
    width: int
    height: int
    fps: float
    frames: tuple[FrameTruth, ...]
    fingerprint: str = ""

    @property
    def duration_s(self) -> float:
        """Length of the video in seconds."""
        return len(self.frames) / self.fps

    @property
    def persons(self) -> tuple[str, ...]:
        """Labels of the persons visible in at least one frame, sorted."""
        return tuple(sorted({face.person for frame in self.frames for face in frame.faces}))

    def intervals(self, person: str, merge_gap: float = MERGE_GAP_S) -> list[tuple[float, float]]:
        """Time intervals in which ``person`` is visible; gaps shorter than ``merge_gap`` closed.

        A run of visible frames i..j is the interval [i/fps, (j+1)/fps].
        """
        runs: list[list[int]] = []
        for frame in self.frames:
            if not any(face.person == person for face in frame.faces):
                continue
            missing = frame.index - runs[-1][1] - 1 if runs else -1
            if runs and (missing <= 0 or missing / self.fps < merge_gap):
                runs[-1][1] = frame.index
            else:
                runs.append([frame.index, frame.index])
        return [(first / self.fps, (last + 1) / self.fps) for first, last in runs]

    def to_json(self) -> dict[str, Any]:
        """The JSON form written beside the video."""
        return {
            "schema": TRUTH_SCHEMA,
            "scenario": self.scenario,
            "fingerprint": self.fingerprint,
            "width": self.width,
            "height": self.height,
            "fps": self.fps,
            "frame_count": len(self.frames),
            "persons": list(self.persons),
            "frames": [
                {
                    "frame": frame.index,
                    "t": round(frame.t, 6),
                    "faces": [
                        {"person": face.person, "box": [round(v, 1) for v in face.box]}
                        for face in frame.faces
                    ],
                }
                for frame in self.frames
            ],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> GroundTruth:
        """Inverse of :meth:`to_json`."""
        if data.get("schema") != TRUTH_SCHEMA:
            raise ValueError(f"not a {TRUTH_SCHEMA} document")
        frames = tuple(
            FrameTruth(
                index=int(frame["frame"]),
                t=float(frame["t"]),
                faces=tuple(
                    TruthFace(str(face["person"]), _box(face["box"])) for face in frame["faces"]
                ),
            )
            for frame in data["frames"]
        )
        return GroundTruth(
            scenario=str(data["scenario"]),
            width=int(data["width"]),
            height=int(data["height"]),
            fps=float(data["fps"]),
            frames=frames,
            fingerprint=str(data.get("fingerprint", "")),
        )


def _box(values: Sequence[float]) -> Box:
    x1, y1, x2, y2 = (float(v) for v in values)
    return (x1, y1, x2, y2)


def truth_path(video: Path) -> Path:
    """Where the ground truth of ``video`` is stored: ``<video>.truth.json``."""
    return video.with_name(video.name + ".truth.json")


def load_truth(path: Path) -> GroundTruth:
    """Read the ground truth of a video; ``path`` is the video or its ``.truth.json`` file."""
    if not path.name.endswith(".truth.json"):
        path = truth_path(path)
    return GroundTruth.from_json(json.loads(path.read_text()))


# ---------------------------------------------------------------------------------------------
# Sprites


@dataclass(frozen=True)
class Sprite:
    """An RGBA head crop and the face box inside it, in sprite pixels."""

    image: Image.Image
    face: Box


@cache
def _photo(name: str) -> Image.Image:
    # Imported here so scoring (which uses the truth types) works while stream/ is in flux.
    from stream.vision.models import fetch

    return Image.open(fetch("face-api-samples") / name).convert("RGB")


@cache
def make_sprite(source: SourceFace) -> Sprite:
    """Cut a head crop around a face: 1.6x the box wide, 1.8x tall, centred a little higher.

    The crop is clipped to the photo, scaled so the face is ``SPRITE_FACE_HEIGHT`` px tall, and
    gets a soft squarish (superellipse) alpha edge so it blends into the background.
    """
    photo = _photo(source.photo)
    x1, y1, x2, y2 = source.box
    w, h = x2 - x1, y2 - y1
    ccx, ccy = (x1 + x2) / 2, (y1 + y2) / 2 - 0.1 * h
    half_w, half_h = 0.8 * w, 0.9 * h
    left = max(0, math.floor(ccx - half_w))
    top = max(0, math.floor(ccy - half_h))
    right = min(photo.width, math.ceil(ccx + half_w))
    bottom = min(photo.height, math.ceil(ccy + half_h))
    k = SPRITE_FACE_HEIGHT / h
    size = (round((right - left) * k), round((bottom - top) * k))
    rgb = photo.crop((left, top, right, bottom)).resize(size, Image.Resampling.LANCZOS)

    xs = (np.arange(size[0]) + 0.5) / k + left
    ys = (np.arange(size[1]) + 0.5) / k + top
    u = np.abs((xs - ccx) / half_w)[None, :]
    v = np.abs((ys - ccy) / half_h)[:, None]
    radius = (u**4 + v**4) ** 0.25
    alpha = np.clip((1.0 - radius) / 0.2, 0.0, 1.0)
    # Also feather edges where the crop was clipped by the photo border.
    edge_x = np.minimum(np.arange(size[0]) + 0.5, size[0] - np.arange(size[0]) - 0.5)[None, :]
    edge_y = np.minimum(np.arange(size[1]) + 0.5, size[1] - np.arange(size[1]) - 0.5)[:, None]
    alpha = alpha * np.clip(np.minimum(edge_x, edge_y) / 8.0, 0.0, 1.0)
    image = rgb.convert("RGBA")
    image.putalpha(Image.fromarray((alpha * 255).astype(np.uint8), "L"))
    face = ((x1 - left) * k, (y1 - top) * k, (x2 - left) * k, (y2 - top) * k)
    return Sprite(image, face)


# ---------------------------------------------------------------------------------------------
# Rendering


def _ease(curve: Sequence[float], u: float) -> float:
    if len(curve) == 1:
        return curve[0]
    pos = min(max(u, 0.0), 1.0) * (len(curve) - 1)
    i = min(int(pos), len(curve) - 2)
    f = (1.0 - math.cos(math.pi * (pos - i))) / 2.0
    return curve[i] * (1.0 - f) + curve[i + 1] * f


def _envelope(phase: Phase, t: float) -> float:
    if t < phase.start or t > phase.end:
        return 0.0
    ramp = max(phase.ramp, 1e-6)
    return min(1.0, (t - phase.start) / ramp, (phase.end - t) / ramp)


def _background(width: int, height: int, seed: int) -> NDArray[np.uint8]:
    """A mid-tone diagonal gradient with soft blotches and a little grain; varies with ``seed``."""
    rng = np.random.default_rng(seed)
    c1 = rng.uniform(70, 190, 3)
    c2 = rng.uniform(70, 190, 3)
    angle = rng.uniform(0, math.pi)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    ramp = (xx / width) * math.cos(angle) + (yy / height) * math.sin(angle)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    image = c1[None, None, :] * (1 - ramp[..., None]) + c2[None, None, :] * ramp[..., None]
    coarse = rng.normal(0.0, 1.0, (height // 60 + 2, width // 60 + 2)).astype(np.float32)
    blotches = Image.fromarray(coarse, "F").resize((width, height), Image.Resampling.BICUBIC)
    image += np.asarray(blotches)[..., None] * 12.0
    image += rng.normal(0.0, 2.5, (height, width, 1))
    result: NDArray[np.uint8] = np.clip(image, 0, 255).astype(np.uint8)
    return result


def _lut(factor: float) -> list[int]:
    return [min(255, round(i * factor)) for i in range(256)]


def _visible_fraction(box: Box, occluders: Sequence[Box], width: int, height: int) -> float:
    """Share of ``box`` inside the frame and not under any occluder, on an 8x8 sample grid."""
    x1, y1, x2, y2 = box
    grid = (np.arange(8) + 0.5) / 8
    xs = (x1 + (x2 - x1) * grid)[None, :]
    ys = (y1 + (y2 - y1) * grid)[:, None]
    shown = (xs >= 0) & (xs < width) & (ys >= 0) & (ys < height)
    for ox1, oy1, ox2, oy2 in occluders:
        shown &= ~((xs >= ox1) & (xs < ox2) & (ys >= oy1) & (ys < oy2))
    return float(shown.mean())


@dataclass(frozen=True)
class _Placed:
    person: str
    face: Box
    rect: Box


def _place(canvas: Image.Image, sprite: Sprite, span: Span, u: float) -> tuple[Box, Box]:
    """Paste one sprite; return the face box and the pasted rectangle in frame pixels."""
    width, height = canvas.size
    x = _ease([p[0] for p in span.path], u) * width
    y = _ease([p[1] for p in span.path], u) * height
    size = _ease([p[2] for p in span.path], u) * height
    light = _ease(span.light, u)
    roll = _ease(span.roll, u)

    fx1, fy1, fx2, fy2 = sprite.face
    k = size / (fy2 - fy1)
    out_w = max(1, round(sprite.image.width * k))
    out_h = max(1, round(sprite.image.height * k))
    kx, ky = out_w / sprite.image.width, out_h / sprite.image.height
    image = sprite.image.resize((out_w, out_h), Image.Resampling.BILINEAR)
    if abs(light - 1.0) > 1e-3:
        lut = _lut(light)
        image = image.point(lut * 3 + list(range(256)))
    face_w, face_h = (fx2 - fx1) * kx, (fy2 - fy1) * ky
    dx = (fx1 + fx2) / 2 * kx - out_w / 2
    dy = (fy1 + fy2) / 2 * ky - out_h / 2
    if abs(roll) > 1e-3:
        image = image.rotate(roll, resample=Image.Resampling.BICUBIC, expand=True)
        a = math.radians(roll)
        cos, sin = math.cos(a), math.sin(a)
        dx, dy = dx * cos + dy * sin, -dx * sin + dy * cos
        # A detector's box on a rolled face lies between the upright box and the bounding box of
        # the rotated one; the geometric mean of the two keeps IoU >= ~0.75 with either.
        bound_w = face_w * abs(cos) + face_h * abs(sin)
        bound_h = face_w * abs(sin) + face_h * abs(cos)
        face_w, face_h = math.sqrt(face_w * bound_w), math.sqrt(face_h * bound_h)
    left = round(x - image.width / 2 - dx)
    top = round(y - image.height / 2 - dy)
    canvas.paste(image, (left, top), image)
    cx, cy = left + image.width / 2 + dx, top + image.height / 2 + dy
    face = (cx - face_w / 2, cy - face_h / 2, cx + face_w / 2, cy + face_h / 2)
    rect = (float(left), float(top), float(left + image.width), float(top + image.height))
    return face, rect


def _render_frame(
    scenario: Scenario, background: NDArray[np.uint8], t: float
) -> tuple[Image.Image, list[TruthFace]]:
    canvas = Image.fromarray(background)
    width, height = canvas.size
    placed: list[_Placed] = []
    for actor in scenario.actors:
        for span in actor.spans:
            if span.start <= t < span.end:
                sprite = make_sprite(PERSONS[actor.person][span.sprite])
                u = (t - span.start) / (span.end - span.start)
                face, rect = _place(canvas, sprite, span, u)
                placed.append(_Placed(actor.person, face, rect))

    bars: list[Box] = []
    draw = ImageDraw.Draw(canvas)
    for bar in scenario.bars:
        if bar.start <= t < bar.end:
            bar_w = bar.width * width
            u = (t - bar.start) / (bar.end - bar.start)
            left = -bar_w + u * (width + bar_w)
            if bar.leftward:
                left = width - u * (width + bar_w)
            rect = (left, 0.0, left + bar_w, float(height))
            draw.rectangle((round(rect[0]), 0, round(rect[2]) - 1, height - 1), fill=bar.colour)
            bars.append(rect)
    for patch in scenario.patches:
        if patch.start <= t < patch.end:
            x1, y1, x2, y2 = patch.box
            rect = (x1 * width, y1 * height, x2 * width, y2 * height)
            draw.rectangle((round(rect[0]), round(rect[1]), round(rect[2]) - 1,
                            round(rect[3]) - 1), fill=patch.colour)
            bars.append(rect)

    faces: list[TruthFace] = []
    for i, item in enumerate(placed):
        occluders = [later.rect for later in placed[i + 1 :]] + bars
        if _visible_fraction(item.face, occluders, width, height) >= MIN_VISIBLE:
            x1, y1, x2, y2 = item.face
            box = (max(0.0, x1), max(0.0, y1), min(float(width), x2), min(float(height), y2))
            faces.append(TruthFace(item.person, box))

    dim = 1.0
    sigma = 0.0
    for phase in scenario.phases:
        strength = _envelope(phase, t)
        if phase.kind == "dim":
            dim *= 1.0 - (1.0 - phase.amount) * strength
        else:
            sigma = max(sigma, phase.amount * strength * height / REFERENCE_HEIGHT)
    if dim < 0.999:
        canvas = canvas.point(_lut(dim) * 3)
    if sigma > 0.05:
        canvas = canvas.filter(ImageFilter.GaussianBlur(sigma))
    return canvas, faces


def _fingerprint(scenario: Scenario) -> str:
    patches = f"|{scenario.patches!r}" if scenario.patches else ""
    text = f"{RENDER_VERSION}|{DEFAULT_PRESET}|{scenario!r}{patches}"
    return hashlib.sha256(text.encode()).hexdigest()


def render(
    scenario: Scenario,
    path: Path,
    *,
    width: int | None = None,
    height: int | None = None,
    fps: int | None = None,
    crf: int | None = None,
) -> GroundTruth:
    """Render ``scenario`` to an H.264 MP4 at ``path`` and write ``<path>.truth.json`` beside it.

    ``width``, ``height``, ``fps`` and ``crf`` override the scenario's own values. Frames are
    encoded as they are drawn, so memory stays bounded. Returns the ground truth.
    """
    scenario = replace(
        scenario,
        width=width or scenario.width,
        height=height or scenario.height,
        fps=fps or scenario.fps,
        crf=scenario.crf if crf is None else crf,
    )
    backgrounds = [_background(scenario.width, scenario.height, scenario.seed + shot)
                   for shot in range(len(scenario.cuts) + 1)]
    frame_count = round(scenario.duration_s * scenario.fps)
    time_base = Fraction(1, scenario.fps)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.stem + ".partial" + path.suffix)
    frames: list[FrameTruth] = []
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=scenario.fps)
        stream.width = scenario.width
        stream.height = scenario.height
        stream.pix_fmt = "yuv420p"
        stream.codec_context.options = {"crf": str(scenario.crf), "preset": DEFAULT_PRESET}
        for index in range(frame_count):
            t = index / scenario.fps
            shot = sum(t >= cut for cut in scenario.cuts)
            image, faces = _render_frame(scenario, backgrounds[shot], t)
            frames.append(FrameTruth(index, t, tuple(faces)))
            frame = av.VideoFrame.from_ndarray(np.asarray(image), format="rgb24")
            frame.pts = index
            frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    partial.replace(path)
    truth = GroundTruth(
        scenario=scenario.name,
        width=scenario.width,
        height=scenario.height,
        fps=float(scenario.fps),
        frames=tuple(frames),
        fingerprint=_fingerprint(scenario),
    )
    truth_path(path).write_text(json.dumps(truth.to_json()) + "\n")
    return truth


# ---------------------------------------------------------------------------------------------
# Scenarios


def _span(
    start: float,
    end: float,
    *path: Point,
    sprite: int = 0,
    light: tuple[float, ...] = (1.0,),
    roll: tuple[float, ...] = (0.0,),
) -> Span:
    return Span(start, end, tuple(path), sprite, light, roll)


def _wander(
    rng: np.random.Generator,
    start: float,
    end: float,
    lane: float,
    *,
    sprite: int = 0,
    sizes: tuple[float, float] = (0.11, 0.26),
    spread: float = 0.05,
) -> Span:
    """A span drifting around the x position ``lane``, zooming and changing light at random."""
    points = max(2, round((end - start) / 3.0) + 1)
    path = tuple(
        (
            round(lane + rng.uniform(-spread, spread), 3),
            round(rng.uniform(0.42, 0.58), 3),
            round(rng.uniform(*sizes), 3),
        )
        for _ in range(points)
    )
    light = tuple(round(rng.uniform(0.7, 1.25), 3) for _ in range(max(2, points // 2 + 1)))
    return Span(start, end, path, sprite, light)


def _two_people(a: str, b: str) -> tuple[Actor, ...]:
    """``a`` (must have two photos) leaves at 7 s and returns at 11 s with its other photo."""
    return (
        Actor(a, (
            _span(0.0, 7.0, (0.18, 0.5, 0.12), (0.3, 0.45, 0.2), (0.42, 0.5, 0.26),
                  light=(1.0, 0.65, 1.1)),
            _span(11.0, 20.0, (0.4, 0.48, 0.24), (0.28, 0.55, 0.16), (0.15, 0.5, 0.11),
                  (0.3, 0.45, 0.18), sprite=1, light=(0.7, 1.2, 0.9)),
        )),
        Actor(b, (
            _span(0.5, 20.0, (0.82, 0.45, 0.26), (0.7, 0.55, 0.15), (0.62, 0.5, 0.11),
                  (0.75, 0.45, 0.2), (0.8, 0.5, 0.25), light=(1.2, 0.75, 1.0, 0.6, 1.1)),
        )),
    )


def _three_at_once(a: str, b: str, c: str) -> tuple[Actor, ...]:
    """All three on screen from 6 s to 11 s; ``c`` leaves and comes back."""
    return (
        Actor(a, (
            _span(0.0, 14.0, (0.2, 0.5, 0.14), (0.28, 0.45, 0.24), (0.16, 0.55, 0.18),
                  (0.22, 0.5, 0.12), light=(1.0, 0.8, 1.15)),
        )),
        Actor(b, (
            _span(3.0, 20.0, (0.5, 0.45, 0.12), (0.52, 0.5, 0.22), (0.47, 0.55, 0.16),
                  (0.5, 0.5, 0.25), light=(0.9, 1.2, 0.8)),
        )),
        Actor(c, (
            _span(6.0, 11.0, (0.8, 0.5, 0.2), (0.84, 0.48, 0.13), light=(1.0, 0.8)),
            _span(15.0, 20.0, (0.78, 0.45, 0.12), (0.82, 0.52, 0.24), light=(1.1, 0.9)),
        )),
    )


def _rolled(actors: tuple[Actor, ...], curves: Sequence[tuple[float, ...]]) -> tuple[Actor, ...]:
    """Give the n-th span (counting over all actors) the n-th roll curve, cycling."""
    result: list[Actor] = []
    n = 0
    for actor in actors:
        spans: list[Span] = []
        for span in actor.spans:
            spans.append(replace(span, roll=curves[n % len(curves)]))
            n += 1
        result.append(Actor(actor.person, tuple(spans)))
    return tuple(result)


def _ten_people() -> tuple[Actor, ...]:
    rng = np.random.default_rng(10)
    left, mid, right = 0.19, 0.5, 0.81
    schedule: list[tuple[str, float, float, float, int]] = [
        ("p01", 0.0, 8.0, left, 0), ("p04", 9.0, 17.0, left, 0), ("p07", 18.0, 26.0, left, 0),
        ("p01", 27.0, 33.0, left, 0), ("p16", 34.0, 40.0, left, 0),
        ("p03", 2.0, 10.0, mid, 0), ("p06", 12.0, 20.0, mid, 0), ("p09", 22.0, 30.0, mid, 0),
        ("p03", 32.0, 40.0, mid, 1),
        ("p13", 0.0, 6.0, right, 0), ("p18", 7.0, 15.0, right, 0), ("p20", 16.0, 24.0, right, 0),
        ("p13", 25.0, 31.0, right, 0), ("p06", 33.0, 40.0, right, 0),
    ]
    spans: dict[str, list[Span]] = {}
    for person, start, end, lane, sprite in schedule:
        spans.setdefault(person, []).append(_wander(rng, start, end, lane, sprite=sprite))
    return tuple(Actor(person, tuple(items)) for person, items in spans.items())


def _speed_actors() -> tuple[Actor, ...]:
    rng = np.random.default_rng(30)
    lanes = (0.14, 0.38, 0.62, 0.86)
    schedule: list[tuple[str, float, float, int]] = [
        ("p01", 0.0, 20.0, 0),
        ("p07", 0.0, 9.0, 1), ("p09", 10.5, 20.0, 1),
        ("p14", 1.0, 20.0, 2),
        ("p18", 0.0, 6.0, 3), ("p20", 7.0, 14.0, 3), ("p18", 15.0, 20.0, 3),
    ]
    spans: dict[str, list[Span]] = {}
    for person, start, end, lane in schedule:
        span = _wander(rng, start, end, lanes[lane], sizes=(0.085, 0.19), spread=0.03)
        spans.setdefault(person, []).append(span)
    return tuple(Actor(person, tuple(items)) for person, items in spans.items())


def _crowd() -> tuple[Actor, ...]:
    """20 persons in six lanes, six on screen most of the time; each lane's next person steps
    into the place a second after the last one left; p01, p03 (in her other photo), p06 and p12
    come back."""
    rng = np.random.default_rng(21)
    lanes = (0.09, 0.25, 0.41, 0.57, 0.73, 0.89)
    schedule: list[tuple[str, float, float, int, int]] = [
        ("p01", 0.0, 9.0, 0, 0), ("p07", 10.0, 19.0, 0, 0), ("p13", 20.0, 29.0, 0, 0),
        ("p01", 30.0, 40.0, 0, 0),
        ("p02", 1.0, 12.0, 1, 0), ("p08", 13.0, 22.0, 1, 0), ("p14", 23.0, 33.0, 1, 0),
        ("p19", 34.0, 40.0, 1, 0),
        ("p03", 0.0, 8.0, 2, 0), ("p09", 9.0, 18.0, 2, 0), ("p15", 19.0, 28.0, 2, 0),
        ("p03", 29.0, 40.0, 2, 1),
        ("p04", 2.0, 11.0, 3, 0), ("p10", 12.0, 21.0, 3, 0), ("p16", 22.0, 31.0, 3, 0),
        ("p20", 32.0, 40.0, 3, 0),
        ("p06", 0.0, 10.0, 4, 0), ("p11", 11.0, 20.0, 4, 0), ("p17", 21.0, 30.0, 4, 0),
        ("p06", 31.0, 40.0, 4, 0),
        ("p12", 3.0, 13.0, 5, 0), ("p18", 14.0, 24.0, 5, 0), ("p21", 25.0, 34.0, 5, 0),
        ("p12", 35.0, 40.0, 5, 0),
    ]
    spans: dict[str, list[Span]] = {}
    for person, start, end, lane, sprite in schedule:
        span = _wander(rng, start, end, lanes[lane], sprite=sprite, sizes=(0.11, 0.2),
                       spread=0.02)
        spans.setdefault(person, []).append(span)
    return tuple(Actor(person, tuple(items)) for person, items in spans.items())


# Face heights, as fractions of 540 lines, of 35-43 px: MTCNN's boxes of them are 22-35 px
# wide, under the quality gate's 40 px.
_SMALL = (0.065, 0.07, 0.08)
_LARGE = 0.21


def _small_faces() -> tuple[Actor, ...]:
    """People seen large then small (p08, p14), small then large in one walk (p12), small then
    gone then large (p17), and one at about 60 px through a focus blur (p03)."""
    small, middle, big = _SMALL
    return (
        Actor("p08", (_span(0.0, 18.0, (0.15, 0.5, _LARGE), (0.17, 0.48, _LARGE),
                            (0.2, 0.5, middle), (0.18, 0.52, small), (0.22, 0.5, big),
                            (0.2, 0.48, small), light=(1.0, 0.85, 1.1)),)),
        Actor("p12", (_span(1.0, 19.0, (0.4, 0.45, small), (0.42, 0.5, middle),
                            (0.38, 0.5, small), (0.4, 0.48, 0.15), (0.42, 0.5, _LARGE),
                            light=(0.9, 1.1)),)),
        Actor("p14", (_span(0.0, 5.0, (0.62, 0.5, _LARGE), (0.6, 0.48, 0.18)),
                      _span(7.5, 20.0, (0.62, 0.5, big), (0.6, 0.45, small),
                            (0.63, 0.5, middle), (0.6, 0.52, small), light=(1.0, 0.8)))),
        Actor("p17", (_span(0.0, 6.0, (0.85, 0.45, small), (0.83, 0.5, middle)),
                      _span(9.0, 20.0, (0.84, 0.5, 0.18), (0.86, 0.48, _LARGE),
                            (0.84, 0.5, 0.17)))),
        Actor("p03", (_span(2.0, 20.0, (0.5, 0.2, 0.17), (0.52, 0.22, 0.11),
                            (0.5, 0.2, 0.11), (0.53, 0.21, 0.12)),)),
    )


def _occlusion() -> tuple[tuple[Actor, ...], tuple[Patch, ...]]:
    """p06's mouth and chin are covered for 5 s (a hand, a microphone), p18's eyes for 3 s; p09
    walks behind p18 (hidden about 2 s) and back; p13 passes in front of p06."""
    actors = (
        Actor("p06", (_span(0.0, 20.0, (0.25, 0.5, 0.22), (0.26, 0.5, 0.22), (0.25, 0.5, 0.22)),)),
        Actor("p09", (_span(2.0, 8.0, (0.97, 0.4, 0.15), (0.4, 0.42, 0.15)),
                      _span(11.0, 17.0, (0.4, 0.42, 0.15), (0.97, 0.4, 0.15)))),
        Actor("p18", (_span(0.0, 20.0, (0.66, 0.5, 0.26), (0.65, 0.5, 0.26), (0.66, 0.5, 0.26)),)),
        Actor("p13", (_span(14.0, 19.0, (-0.05, 0.55, 0.24), (0.55, 0.55, 0.24)),)),
    )
    patches = (
        Patch(5.0, 10.0, (0.18, 0.54, 0.33, 0.64)),  # p06's mouth and chin
        Patch(12.0, 15.0, (0.58, 0.4, 0.74, 0.47), colour=(30, 30, 34)),  # p18's eyes
    )
    return actors, patches


def _bar_sweeps(
    starts: Sequence[float], width: float = 0.25, duration: float = 3.6
) -> tuple[Bar, ...]:
    # At 960 px a 0.25-wide bar crossing in 3.6 s moves ~330 px/s: it fully covers a 55-110 px
    # face for ~0.4-0.6 s and hides it (>40% covered) for ~0.8 s, below the 1 s merge gap.
    return tuple(
        Bar(start, start + duration, width, leftward=i % 2 == 1) for i, start in enumerate(starts)
    )


BENCHMARK_SCENARIOS: tuple[str, ...] = (
    "two-people",
    "three-at-once",
    "ten-people",
    "hard-roll",
    "hard-blur",
    "hard-dim",
    "hard-bar",
    "hard-compression",
    "cuts",
    "lookalikes",
    "crowd",
    "small-faces",
    "occlusion",
)


def scenarios() -> dict[str, Scenario]:
    """Every scenario by name: the benchmark ones (see ``BENCHMARK_SCENARIOS``), demo and speed."""
    roll_curves = [(0.0, -25.0, 15.0, 25.0, -10.0), (20.0, -15.0, -25.0, 10.0, 0.0)]
    occluded, patches = _occlusion()
    items = [
        Scenario(
            "two-people",
            "2 persons move, zoom (60-140 px faces) and change light; p03 leaves at 7 s and "
            "returns at 11 s in a different photo",
            20.0, _two_people("p03", "p12"), seed=1,
        ),
        Scenario(
            "three-at-once",
            "3 persons entering and leaving at different times, all three on screen 6-11 s and "
            "15-20 s; one leaves and comes back",
            20.0, _three_at_once("p08", "p17", "p14"), seed=2,
        ),
        Scenario(
            "ten-people",
            "10 distinct persons in three lanes, at most 3 at once; p01, p06, p13 come back, "
            "p03 comes back in a different photo, p06 in another place",
            40.0, _ten_people(), seed=3,
        ),
        Scenario(
            "hard-roll",
            "two-people layout with head roll up to +-25 degrees",
            20.0, _rolled(_two_people("p03", "p15"), roll_curves), seed=4,
        ),
        Scenario(
            "hard-blur",
            "three-at-once layout with Gaussian focus blur phases (sigma up to 2.5 px at 540p)",
            20.0, _three_at_once("p02", "p11", "p19"), seed=5,
            phases=(Phase("blur", 2.0, 5.0, 2.5), Phase("blur", 8.0, 10.5, 1.8),
                    Phase("blur", 13.0, 17.0, 2.5)),
        ),
        Scenario(
            "hard-dim",
            "two-people layout with phases at 25-35% brightness",
            20.0, _two_people("p03", "p16"), seed=6,
            phases=(Phase("dim", 2.5, 6.0, 0.3), Phase("dim", 9.0, 13.0, 0.25),
                    Phase("dim", 15.5, 19.0, 0.35)),
        ),
        Scenario(
            "hard-bar",
            "three-at-once layout; an opaque bar sweeps across four times and hides each face "
            "for under a second",
            20.0, _three_at_once("p06", "p13", "p20"), seed=7,
            bars=_bar_sweeps((1.0, 6.0, 11.0, 15.5)),
        ),
        Scenario(
            "hard-compression",
            "two-people layout encoded at crf 42",
            20.0, _two_people("p03", "p10"), seed=8, crf=42,
        ),
        Scenario(
            "demo",
            "short demo: p03 returns in a different photo, p17 stays, p12 passes through",
            12.0,
            (
                Actor("p03", (
                    _span(0.0, 5.0, (0.2, 0.5, 0.15), (0.25, 0.45, 0.24), light=(1.0, 0.8)),
                    _span(7.0, 12.0, (0.22, 0.48, 0.22), (0.18, 0.52, 0.14), sprite=1),
                )),
                Actor("p17", (
                    _span(0.0, 12.0, (0.8, 0.5, 0.2), (0.76, 0.45, 0.13), (0.8, 0.5, 0.24),
                          light=(1.0, 1.2, 0.85)),
                )),
                Actor("p12", (_span(3.0, 9.0, (0.5, 0.45, 0.12), (0.52, 0.5, 0.2)),)),
            ),
            seed=9,
        ),
        Scenario(
            "cuts",
            "three shots: p12 takes p03's place at the cut at 5 s, p03 is back in it at the cut "
            "at 9.5 s; p17 stays on the right through both cuts",
            14.0,
            (
                Actor("p03", (
                    _span(0.0, 5.0, (0.25, 0.5, 0.2), (0.28, 0.48, 0.24)),
                    _span(9.5, 14.0, (0.26, 0.5, 0.22), (0.24, 0.52, 0.18), sprite=1),
                )),
                Actor("p12", (_span(5.0, 9.5, (0.25, 0.5, 0.2), (0.27, 0.47, 0.23)),)),
                Actor("p17", (_span(0.0, 14.0, (0.75, 0.5, 0.2), (0.72, 0.46, 0.24),
                                    (0.76, 0.5, 0.18)),)),
            ),
            seed=12, cuts=(5.0, 9.5),
        ),
        Scenario(
            "lookalikes",
            "the closest pairs of different people in the photos (p02/p04/p11, p10/p20, "
            "p03/p06) take turns in the same two places, never on screen together, with "
            "faces of 80-110 px, head roll, crf 36 and a dim phase; p02 and p10 come back",
            30.0,
            _rolled((
                Actor("p02", (_span(0.0, 5.0, (0.3, 0.5, 0.15), (0.32, 0.48, 0.2)),
                              _span(24.0, 30.0, (0.3, 0.5, 0.17), (0.28, 0.52, 0.15)))),
                Actor("p04", (_span(6.0, 11.0, (0.3, 0.5, 0.17), (0.3, 0.47, 0.15)),)),
                Actor("p11", (_span(12.0, 17.0, (0.31, 0.5, 0.15), (0.29, 0.49, 0.19)),)),
                Actor("p03", (_span(18.0, 23.0, (0.3, 0.48, 0.17), (0.32, 0.5, 0.15),
                                    sprite=1),)),
                Actor("p10", (_span(0.0, 6.0, (0.7, 0.5, 0.15), (0.72, 0.48, 0.2)),
                              _span(25.0, 30.0, (0.7, 0.5, 0.17), (0.68, 0.5, 0.15)))),
                Actor("p20", (_span(7.0, 13.0, (0.7, 0.5, 0.17), (0.69, 0.47, 0.15)),)),
                Actor("p06", (_span(14.0, 23.0, (0.71, 0.5, 0.15), (0.7, 0.5, 0.2)),)),
            ), [(0.0, 18.0, -12.0, 20.0), (-15.0, 10.0, 0.0, -20.0)]),
            crf=36, phases=(Phase("dim", 8.0, 11.0, 0.35),), seed=13,
        ),
        Scenario(
            "crowd",
            "20 persons in six lanes, six on screen most of the time (60-110 px faces); each "
            "lane's next person steps into the place a second after the last left; four come "
            "back, p03 in her other photo",
            40.0, _crowd(), seed=21,
        ),
        Scenario(
            "small-faces",
            "faces 35-43 px tall (22-35 px wide boxes): people seen large then small, small "
            "then large, small then gone and back large, and one at about 60 px; a focus blur "
            "at 10-13 s",
            20.0, _small_faces(), seed=22, phases=(Phase("blur", 10.0, 13.0, 1.2),),
        ),
        Scenario(
            "occlusion",
            "a hand over p06's mouth and chin for 5 s, a bar over p18's eyes for 3 s; p09 "
            "walks behind p18 and back; p13 walks in front of p06",
            20.0, occluded, seed=23, patches=patches,
        ),
        Scenario(
            "speed",
            "1280x720 at 30 fps, 3-4 faces on screen most of the time",
            20.0, _speed_actors(), width=1280, height=720, fps=30, seed=11,
        ),
    ]
    return {item.name: item for item in items}


def build(name: str, directory: Path) -> tuple[Path, GroundTruth]:
    """Render scenario ``name`` to ``directory/<name>.mp4`` unless an up-to-date copy is there.

    A cached video is reused when its truth file exists and was rendered from the same scenario
    definition. Returns the video path and its ground truth.
    """
    table = scenarios()
    if name not in table:
        raise KeyError(f"unknown scenario {name!r}; known: {', '.join(table)}")
    scenario = table[name]
    video = directory / f"{name}.mp4"
    if video.is_file() and truth_path(video).is_file():
        try:
            truth = load_truth(video)
        except (ValueError, KeyError, json.JSONDecodeError):
            truth = None
        if truth is not None and truth.fingerprint == _fingerprint(scenario):
            return video, truth
    return video, render(scenario, video)


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: render one scenario into a directory and print the video path."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.synthetic", description=__doc__)
    parser.add_argument("name", choices=sorted(scenarios()), help="scenario to render")
    parser.add_argument("outdir", type=Path, help="directory for the video and its truth")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    video, truth = build(args.name, args.outdir)
    print(
        f"{truth.scenario}: {len(truth.frames)} frames, {len(truth.persons)} persons, "
        f"{time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    print(video)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
