"""Opening and decoding video files with PyAV, keeping only the frames to analyse."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from stream.errors import DecodeError, InputError
from stream.types import Frame

log = logging.getLogger(__name__)

MAX_DECODE_ERRORS = 50  # after this many broken packets in a row the rest is not worth trying
MAX_FRAME_GAP = 4  # frame intervals between consecutive timestamps before frames count as lost


@dataclass(frozen=True)
class VideoInfo:
    """What the container says about the video before decoding."""

    path: Path
    fps: float
    duration_s: float | None
    width: int
    height: int


@dataclass
class DecodeStats:
    """Counts kept while decoding; ``problems`` lists what went wrong, for the report."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    last_t: float = 0.0
    problems: list[str] = field(default_factory=list)


def probe(path: Path) -> VideoInfo:
    """Open ``path`` and read its video stream's properties; clear errors for unusable input."""
    if not path.exists():
        raise InputError(f"{path} does not exist; give the path of a video file")
    if not path.is_file():
        raise InputError(f"{path} is not a file; give the path of a video file")
    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise DecodeError(f"{path} has no video stream; give a video file")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or 25
            duration = None
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            return VideoInfo(path, float(rate), duration, stream.codec_context.width,
                             stream.codec_context.height)
    except av.FFmpegError as error:
        raise DecodeError(f"{path} is not a video PyAV can read ({error.strerror or error}); "
                          "give a video file (mp4, mkv, avi, …)") from error


def detect_size(width: int, height: int, detect_width: int | None) -> tuple[int, int] | None:
    """The size of the detector's copy of a ``width`` x ``height`` frame, or ``None`` when the
    frame is not wider than ``detect_width`` (it is used as it is)."""
    if detect_width is None or width <= detect_width:
        return None
    return detect_width, round(height * detect_width / width)


def sampled_frames(info: VideoInfo, sample_fps: float | None, stats: DecodeStats, *,
                   detect_width: int | None = None) -> Iterator[Frame]:
    """Decode the video, yielding RGB frames at about ``sample_fps`` (all frames when ``None``
    or when the video is slower). Broken packets are skipped and counted in ``stats``.

    With ``detect_width``, each frame also carries the detector's smaller copy, scaled here by
    FFmpeg's area filter: in the decoder's thread, off the models' critical path.
    """
    interval = 0.0 if sample_fps is None else 1.0 / sample_fps
    next_t = 0.0
    errors_in_row = 0
    with av.open(str(info.path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        packets = container.demux(stream)
        while True:
            try:
                packet = next(packets)
                decoded = packet.decode()
                errors_in_row = 0
            except StopIteration:
                break
            except av.FFmpegError as error:
                errors_in_row += 1
                stats.problems.append(f"decode error after frame {stats.frames_decoded}: {error}")
                if errors_in_row >= MAX_DECODE_ERRORS:
                    stats.problems.append("gave up: too many decode errors in a row")
                    break
                continue
            for frame in decoded:
                index = stats.frames_decoded
                stats.frames_decoded += 1
                t = float(frame.time) if frame.time is not None else index / info.fps
                if frame.is_corrupt:
                    stats.problems.append(f"frame {index} at {t:.2f} s is corrupt")
                if index and t - stats.last_t > MAX_FRAME_GAP * max(1 / info.fps, 0.04):
                    stats.problems.append(f"frames missing between {stats.last_t:.2f} s and "
                                          f"{t:.2f} s")
                stats.last_t = max(stats.last_t, t)
                if t + 1e-6 < next_t:
                    continue
                next_t = max(next_t + interval, t + interval / 2)
                stats.frames_sampled += 1
                image = np.asarray(frame.to_ndarray(format="rgb24"), np.uint8)
                detect_image = None
                small = detect_size(frame.width, frame.height, detect_width)
                if small is not None:
                    detect_image = np.asarray(frame.reformat(
                        width=small[0], height=small[1], format="rgb24", interpolation="AREA",
                    ).to_ndarray(), np.uint8)
                yield Frame(index, t, image, detect_image)
    if info.duration_s is not None and stats.last_t + 1.0 < info.duration_s:
        stats.problems.append(f"the video stops at {stats.last_t:.2f} s but its header says "
                              f"{info.duration_s:.2f} s: the file is truncated")


def prefetch(frames: Iterator[Frame], depth: int = 8) -> Iterator[Frame]:
    """Run ``frames`` in a decoder thread, ``depth`` frames ahead of the consumer.

    The file pipeline analyses every sampled frame, so a full queue blocks the decoder (no drop).
    """
    handoff: queue.Queue[Frame | BaseException | None] = queue.Queue(maxsize=depth)
    stop = threading.Event()

    def run() -> None:
        try:
            for frame in frames:
                while not stop.is_set():
                    try:
                        handoff.put(frame, timeout=0.2)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            handoff.put(None)
        except BaseException as error:  # handed to the consumer, which re-raises it
            handoff.put(error)

    thread = threading.Thread(target=run, name="decoder", daemon=True)
    thread.start()
    try:
        while (item := handoff.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)
