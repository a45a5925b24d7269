"""Opening and decoding video with PyAV, keeping only the frames to analyse: files for
``analyze``, and cameras (network streams, webcams, files) read live in their own threads."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Generator, Iterator
from contextlib import closing
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import av
import numpy as np
from av.codec.hwaccel import HWAccel
from av.container import InputContainer
from av.video.reformatter import VideoReformatter

from stream.config import CameraConfig, SourceSettings, redact_url
from stream.errors import DecodeError, InputError
from stream.shots import ShotBoundaries
from stream.types import Frame

log = logging.getLogger(__name__)

MAX_DECODE_ERRORS = 50  # after this many broken packets in a row the rest is not worth trying
MAX_FRAME_GAP = 4  # frame intervals between consecutive timestamps before frames count as lost
# How FFmpeg may spread a camera's decoding over threads: slices of a frame, not several frames
# at once as for a file decoded at will. A camera decodes at its own rate, beside the others and
# the models, so frame threads buy it nothing, and they cost a fifth to a third more CPU (720p
# H.264 here: 1.35-1.76 ms a frame against 0.94-1.43) and hold back two more frames (67 ms at
# 30 fps).
LIVE_THREADING = "SLICE"


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


def source_path(url: str) -> Path:
    """The path a file source's ``url`` names (a plain path or a ``file:`` URL)."""
    return Path(urlsplit(url).path) if url.lower().startswith("file:") else Path(url)


def detect_size(width: int, height: int, detect_width: int | None) -> tuple[int, int] | None:
    """The size of the detector's copy of a ``width`` x ``height`` frame, or ``None`` when the
    frame is not wider than ``detect_width`` (it is used as it is)."""
    if detect_width is None or width <= detect_width:
        return None
    return detect_width, round(height * detect_width / width)


class Sampler:
    """Picks frames at about ``fps`` out of increasing timestamps (every frame when ``None``)."""

    def __init__(self, fps: float | None) -> None:
        self.interval = 0.0 if fps is None else 1.0 / fps
        self.next_t = 0.0

    def due(self, t: float) -> bool:
        """Whether the frame at ``t`` seconds is to be analysed."""
        if t + 1e-6 < self.next_t:
            return False
        # Half an interval of slack keeps the rate when timestamps jitter around the grid
        self.next_t = max(self.next_t + self.interval, t + self.interval / 2)
        return True


class FrameConverter:
    """Turns one source's decoded frames into :class:`Frame`: RGB, and with ``detect_width`` the
    detector's smaller copy, scaled by FFmpeg's area filter in the decoding thread, off the
    models' critical path; a shot cut (:class:`ShotBoundaries`, fed every converted frame) is
    marked as a discontinuity. One per pass over a source: its two reformatters keep FFmpeg's
    scaler set up from frame to frame (each frame's own reformatter built it anew, twice per
    frame: 1.9 ms per 720p frame against 1.1, the same pixels)."""

    def __init__(self, detect_width: int | None) -> None:
        self.detect_width = detect_width
        self.shots = ShotBoundaries()
        self._rgb = VideoReformatter()
        self._small = VideoReformatter()

    def __call__(self, frame: av.VideoFrame, index: int, t: float, *,
                 captured_at: float | None = None) -> Frame:
        """``frame``, the ``index``-th of its source, at ``t`` seconds."""
        image = np.asarray(self._rgb.reformat(frame, format="rgb24").to_ndarray(), np.uint8)
        detect_image = None
        small = detect_size(frame.width, frame.height, self.detect_width)
        if small is not None:
            detect_image = np.asarray(self._small.reformat(
                frame, width=small[0], height=small[1], format="rgb24", interpolation="AREA",
            ).to_ndarray(), np.uint8)
        cut = self.shots.is_cut(image if detect_image is None else detect_image)
        return Frame(index, t, image, detect_image, captured_at, discontinuity=cut)


def sampled_frames(info: VideoInfo, sample_fps: float | None, stats: DecodeStats, *,
                   detect_width: int | None = None, hwaccel: HWAccel | None = None,
                   live: bool = False) -> Generator[Frame, None, None]:
    """Decode the video, yielding RGB frames at about ``sample_fps`` (all frames when ``None``
    or when the video is slower). Broken packets are skipped and counted in ``stats``.

    With ``detect_width``, each frame also carries the detector's smaller copy
    (:class:`FrameConverter`); with ``hwaccel`` (:func:`hardware_decoding`), the video is decoded
    on the GPU; ``live``: played as a camera, decoded as cameras are (:data:`LIVE_THREADING`).
    """
    sampler = Sampler(sample_fps)
    convert = FrameConverter(detect_width)
    errors_in_row = 0
    with av.open(str(info.path), hwaccel=hwaccel) as container:
        stream = container.streams.video[0]
        stream.thread_type = LIVE_THREADING if live else "AUTO"
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
                if not sampler.due(t):
                    continue
                stats.frames_sampled += 1
                yield convert(frame, index, t)
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


# Live sources: cameras read in their own threads, newest frame wins.

# "refused": the server answered, but will not serve the stream (404 Not Found, 401
# Unauthorized): retried much later than a connection that failed (see Backoff.refused).
CameraState = Literal["connecting", "streaming", "reconnecting", "refused", "failed", "stopped"]
# PyAV's read timeout; its interrupt is the only way into a blocked read, so reads give up this
# often to look at the stop flag (and resume where they were when it is not set).
POLL_S = 0.2


@dataclass(frozen=True)
class CameraStatus:
    """A camera's change of state, with why (for "reconnecting", "refused", "failed",
    "stopped")."""

    camera: str
    state: CameraState
    reason: str | None = None
    retry_in_s: float | None = None


@dataclass
class CameraStats:
    """Counts written by the camera's thread and read by others."""

    frames_decoded: int = 0
    frames_sampled: int = 0
    frames_dropped: int = 0  # sampled frames replaced before they were taken
    reconnects: int = 0
    state: CameraState = "connecting"
    reason: str | None = None  # of the latest state, when it has one


class _SourceLostError(Exception):
    """A live source stopped delivering video; the message is the reason."""


class _RefusedError(_SourceLostError):
    """The server answered with a refusal (4xx) that retrying soon will not change."""


def hardware_decoding(decoder: str, device: str) -> HWAccel | None:
    """PyAV's CUDA decoding (NVDEC) as the engine's ``decoder`` setting asks, on the CUDA device
    ``device`` names (``cuda:1``; the first for ``cuda`` or ``cpu``), or ``None``: decode on the
    CPU. ``auto`` decodes on the GPU when the models run on one (``device`` is ``cuda...``) and
    decoding works there, else on the CPU (said in the log); ``cuda`` insists, and raises
    :class:`InputError` where it cannot work; ``cpu`` never does. Codecs NVDEC lacks are decoded
    on the CPU stream by stream."""
    if decoder == "cpu" or (decoder == "auto" and not device.startswith("cuda")):
        return None
    accel = HWAccel(device_type="cuda", device=device.partition(":")[2] or None,
                    allow_software_fallback=True)
    try:
        accel.create(av.Codec("h264", "r"))  # opens the device, as each decoder will
    except (av.FFmpegError, OSError, ValueError) as error:  # no GPU, no NVDEC, a driver mismatch
        if decoder == "cuda":
            raise InputError(f"decoder cuda: PyAV cannot decode on the GPU here "
                             f"({_describe(error)}); use --decoder cpu or --decoder auto"
                             ) from None
        log.warning("decoding video on the CPU: PyAV cannot decode on %s here (%s)", device,
                    _describe(error))
        return None
    log.info("decoding video on the GPU (NVDEC)")
    return accel


def _describe(error: Exception) -> str:
    """A one-line reason for ``error`` without the URL (FFmpeg's message names the file)."""
    if isinstance(error, av.FFmpegError | OSError) and error.strerror:
        return str(error.strerror)
    return str(error) or type(error).__name__


class Camera:
    """Reads one source in its own thread and keeps only the newest sampled frame (latest wins).

    Network streams and webcams are reconnected forever with capped, jittered exponential
    backoff (much slower after the server refused the stream, the ``refused`` state); files
    play at their own rate (``realtime``) or as fast as they decode, and loop when asked.
    Changes of state go to ``on_status``, called from the camera's thread.

    A file with ``drop: false`` is handed over losslessly instead: the decoder waits for the
    models, and frames go in batches of ``batch`` consecutive frames, the batches
    ``facestream analyze`` makes, so that both commands analyse a file alike. With ``hwaccel``
    (:func:`hardware_decoding`) the source is decoded on the GPU.
    """

    def __init__(self, config: CameraConfig, settings: SourceSettings, *,
                 detect_width: int | None, on_status: Callable[[CameraStatus], None],
                 frame_ready: threading.Event, batch: int = 1,
                 hwaccel: HWAccel | None = None) -> None:
        self.name = config.name
        self.config = config
        self.settings = settings
        self.detect_width = detect_width
        self.hwaccel = hwaccel
        self.stats = CameraStats()
        self._on_status = on_status
        self._frame_ready = frame_ready
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._taken = threading.Condition(self._lock)  # frames were taken
        self._frames: deque[Frame] = deque()
        self._capacity = 1 if config.drop else batch
        self._offered_all = False  # the thread will offer no more frames
        self._started_at = 0.0
        self._thread = threading.Thread(target=self._run, name=f"camera-{self.name}",
                                        daemon=True)

    def start(self) -> None:
        """Start reading in the camera's thread."""
        self._started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        """Ask the thread to end (it does within about ``POLL_S``); safe to call again."""
        self._stop.set()

    def join(self, timeout: float | None = None) -> None:
        """Wait for the thread to end, at most ``timeout`` seconds."""
        if self._thread.ident is not None:
            self._thread.join(timeout)

    def is_alive(self) -> bool:
        """Whether the camera's thread is running."""
        return self._thread.is_alive()

    @property
    def waiting(self) -> bool:
        """Whether a frame waits for the models."""
        return bool(self._frames)

    def take(self) -> Frame | None:
        """The oldest sampled frame not taken yet (when frames are dropped, the newest and only
        one), or ``None``."""
        with self._lock:
            frame = self._frames.popleft() if self._frames else None
            self._taken.notify()
        return frame

    def take_batch(self) -> list[Frame]:
        """What the models analyse next: the newest frame; or, handed over losslessly, a whole
        batch (the last frames once the source has ended), else nothing yet."""
        with self._lock:
            if len(self._frames) < self._capacity and not self._offered_all:
                return []
            frames = list(self._frames)
            self._frames.clear()
            self._taken.notify()
        return frames

    def _report(self, state: CameraState, reason: str | None = None,
                retry_in_s: float | None = None) -> None:
        if state in ("stopped", "failed"):  # before it is seen: the frames left are the last
            with self._lock:
                self._offered_all = True
        self.stats.state, self.stats.reason = state, reason
        if state != "connecting":  # logged with its URL where it begins
            level = (logging.WARNING if state in ("reconnecting", "refused", "failed")
                     else logging.INFO)
            log.log(level, "camera %s: %s%s%s", self.name, state,
                    f" ({reason})" if reason else "",
                    f"; retrying in {retry_in_s:.1f} s" if retry_in_s is not None else "")
        self._on_status(CameraStatus(self.name, state, reason, retry_in_s))

    def _offer(self, frame: Frame) -> None:
        with self._lock:
            # Lossless hand-off (files with drop: false): the decoder waits for the models.
            while (not self.config.drop and len(self._frames) >= self._capacity
                   and not self._stop.is_set()):
                self._taken.wait(POLL_S)
            if len(self._frames) >= self._capacity:
                self._frames.popleft()
                self.stats.frames_dropped += 1
            self._frames.append(frame)
        self.stats.frames_sampled += 1
        self._frame_ready.set()

    def _fail(self, reason: str) -> None:
        self._report("failed", reason)

    def _run(self) -> None:
        try:
            if self.config.kind == "file":
                self._play_file()
            else:
                self._watch_stream()
        except Exception as error:  # a bug, not a camera problem: say so instead of hanging
            log.exception("camera %s: unexpected error", self.name)
            self._report("failed", f"unexpected error: {_describe(error)}")

    # Files

    def _play_file(self) -> None:
        path = source_path(self.config.url)
        try:
            info = probe(path)
        except InputError as error:
            self._fail(str(error))
            return
        offset_t = 0.0  # the camera's time at the start of this pass through the file
        while not self._stop.is_set():
            played = DecodeStats()
            try:
                self._play_once(info, played, offset_t)
            except (av.FFmpegError, OSError) as error:  # e.g. the file went away
                self._fail(f"cannot read {path}: {_describe(error)}")
                return
            if self._stop.is_set():
                break
            if not played.frames_sampled:
                self._fail(f"no frame of {path} decodes")
                return
            if not self.config.loop:
                self._report("stopped", "end of file")
                return
            offset_t += played.last_t + 1 / info.fps
        self._report("stopped", "shut down")

    def _play_once(self, info: VideoInfo, played: DecodeStats, offset_t: float) -> None:
        first_index = self.stats.frames_decoded
        started = time.monotonic()
        first_t: float | None = None
        offered = False
        with closing(sampled_frames(info, self.config.sample_fps, played,
                                    detect_width=self.detect_width, hwaccel=self.hwaccel,
                                    live=self.config.realtime)) as frames:
            for frame in frames:
                self.stats.frames_decoded = first_index + played.frames_decoded
                if self.stats.state != "streaming":
                    self._report("streaming")
                if self.config.realtime:
                    first_t = frame.t if first_t is None else first_t
                    if self._stop.wait(started + frame.t - first_t - time.monotonic()):
                        return
                elif self._stop.is_set():
                    return
                # A second pass starts the picture over: nothing continues across the loop.
                self._offer(replace(frame, index=first_index + frame.index,
                                    t=offset_t + frame.t, captured_at=time.time(),
                                    discontinuity=frame.discontinuity
                                    or (offset_t > 0 and not offered)))
                offered = True
        self.stats.frames_decoded = first_index + played.frames_decoded

    # Network streams and webcams

    def _watch_stream(self) -> None:
        log.info("camera %s: connecting to %s", self.name, redact_url(self.config.url))
        self._report("connecting")
        backoff = self.settings.backoff()
        refused = backoff.refused()
        while not self._stop.is_set():
            delivered, reason, refusal = self._session()
            if self._stop.is_set():
                break
            if delivered:
                backoff.reset()
                refused.reset()
            delay = refused.next_delay() if refusal else backoff.next_delay()
            self.stats.reconnects += 1
            self._report("refused" if refusal else "reconnecting", reason, delay)
            self._stop.wait(delay)
        self._report("stopped", "shut down")

    def _session(self) -> tuple[bool, str, bool]:
        """One connection: hand over frames until the source fails, ends or ``stop()``.

        Returns whether frames came, why the connection ended, and whether the server refused.
        """
        delivered = offered = False
        sampler = Sampler(self.config.sample_fps)
        convert = FrameConverter(self.detect_width)
        try:
            container = self._open()
            if container is None:
                return False, "stopped", False
            with container:
                if not container.streams.video:
                    raise _SourceLostError("the source has no video stream")
                for frame in self._decode(container, container.streams.video[0]):
                    index = self.stats.frames_decoded
                    self.stats.frames_decoded += 1
                    if not delivered:
                        delivered = True
                        self._report("streaming")
                    t = time.monotonic() - self._started_at
                    if sampler.due(t):
                        # After a reconnect the picture does not continue the one before.
                        sampled = convert(frame, index, t, captured_at=time.time())
                        self._offer(replace(sampled, discontinuity=sampled.discontinuity or (
                            self.stats.reconnects > 0 and not offered)))
                        offered = True
        except (_SourceLostError, av.FFmpegError, OSError) as error:
            return delivered, _describe(error), isinstance(error, _RefusedError)
        return delivered, "the stream ended", False

    def _open(self) -> InputContainer | None:
        """Open the source, or ``None`` when ``stop()`` comes first.

        PyAV's open timeout cannot be cut short, so the open runs in a helper thread that this
        one stops waiting for; an abandoned container is closed when the helper drops it.
        """
        url = self.config.url
        options = {"rtsp_transport": "tcp"} if url.lower().startswith("rtsp") else {}
        source_format = "v4l2" if self.config.kind == "webcam" else None
        timeout = (self.settings.connect_timeout_s, min(POLL_S, self.settings.read_timeout_s))
        result: queue.Queue[InputContainer | Exception] = queue.Queue()

        def run() -> None:
            started = time.monotonic()
            try:
                result.put(av.open(url, format=source_format, options=options,
                                   timeout=timeout, hwaccel=self.hwaccel))
            except Exception as error:  # handed to the camera's thread
                if isinstance(error, av.HTTPClientError):  # RTSP and HTTP: 401, 403, 404...
                    result.put(_RefusedError(f"the server refused: {_describe(error)}"))
                    return
                # A timed-out open can surface as any error (RTSP: "invalid data")
                if time.monotonic() - started >= self.settings.connect_timeout_s:
                    reason = f"no answer within {self.settings.connect_timeout_s:g} s"
                else:
                    reason = f"cannot open: {_describe(error)}"
                result.put(_SourceLostError(reason))

        threading.Thread(target=run, name=f"camera-{self.name}-open", daemon=True).start()
        while not self._stop.is_set():
            try:
                item = result.get(timeout=POLL_S)
            except queue.Empty:
                continue
            if isinstance(item, Exception):
                raise item
            return item
        return None

    def _decode(self, container: InputContainer, stream: av.VideoStream
                ) -> Iterator[av.VideoFrame]:
        """The stream's frames until it ends or ``stop()``; ``_SourceLostError`` after
        ``read_timeout_s`` without data or after too many undecodable packets in a row."""
        stream.thread_type = LIVE_THREADING
        last_data = time.monotonic()
        errors_in_row = 0
        while not self._stop.is_set():
            try:
                for packet in container.demux(stream):
                    last_data = time.monotonic()
                    try:
                        frames = packet.decode()
                        errors_in_row = 0
                    except av.InvalidDataError:  # e.g. joined between key frames
                        errors_in_row += 1
                        if errors_in_row >= MAX_DECODE_ERRORS:
                            raise _SourceLostError("the video does not decode") from None
                        continue
                    yield from frames
                    if self._stop.is_set():
                        return
                return
            except av.ExitError:  # the poll timeout: the read resumes on the next demux()
                if time.monotonic() - last_data > self.settings.read_timeout_s:
                    raise _SourceLostError(f"no video for {self.settings.read_timeout_s:g} s"
                                     ) from None
