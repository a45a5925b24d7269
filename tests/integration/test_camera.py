"""Live cameras against a real RTSP server on loopback, real files and unreachable ports."""

from __future__ import annotations

import functools
import http.server
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from pathlib import Path

import av
import numpy as np
import pytest

from stream.config import CameraConfig, SourceSettings, redact_url
from stream.sources import Camera, CameraState, CameraStatus
from stream.types import Frame
from tests.fixtures import free_port
from tests.fixtures.rtsp import RtspServer
from tests.media import write_video

FAST = SourceSettings(connect_timeout_s=2, read_timeout_s=1, backoff_initial_s=0.1,
                      backoff_max_s=0.4)
# Timeouts and backoff far longer than a prompt stop may take
SLOW = SourceSettings(connect_timeout_s=20, read_timeout_s=20, backoff_initial_s=20,
                      backoff_max_s=20)
PROMPT_S = 2.0


def clip(path: Path, seconds: float) -> Path:
    """A 320x240, 25 fps H.264 mp4 of a moving square."""
    frames = []
    for i in range(round(seconds * 25)):
        image = np.full((240, 320, 3), (i * 2) % 256, np.uint8)
        image[100:140, (i * 3) % 280:(i * 3) % 280 + 40] = 255
        frames.append(image)
    return write_video(path, frames)


@pytest.fixture(scope="module")
def clip4(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip(tmp_path_factory.mktemp("camera") / "clip4.mp4", 4)


@pytest.fixture(scope="module")
def clip1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return clip(tmp_path_factory.mktemp("camera") / "clip1.mp4", 1)


class Statuses:
    """The statuses a camera reported, in order, and a way to wait for one."""

    def __init__(self) -> None:
        self.all: list[CameraStatus] = []
        self._changed = threading.Condition()

    def __call__(self, status: CameraStatus) -> None:
        with self._changed:
            self.all.append(status)
            self._changed.notify_all()

    def states(self) -> list[CameraState]:
        with self._changed:
            return [status.state for status in self.all]

    def wait_for(self, state: CameraState, count: int = 1, timeout: float = 10) -> CameraStatus:
        """The ``count``-th status with ``state``, waiting for it if need be."""
        def found() -> list[CameraStatus]:
            return [status for status in self.all if status.state == state]
        with self._changed:
            assert self._changed.wait_for(lambda: len(found()) >= count, timeout), (
                f"no {count} x {state!r} within {timeout} s; got {self.all}")
            return found()[count - 1]


@contextmanager
def running(url: str, settings: SourceSettings = FAST, *, sample_fps: float = 10,
            realtime: bool = True, loop: bool = False, detect_width: int | None = 160
            ) -> Iterator[tuple[Camera, Statuses]]:
    """A started camera; at the end it is stopped and its thread must be gone promptly."""
    statuses = Statuses()
    config = CameraConfig(name="cam", url=url, sample_fps=sample_fps, realtime=realtime,
                          loop=loop)
    camera = Camera(config, settings, detect_width=detect_width, on_status=statuses,
                    frame_ready=threading.Event())
    camera.start()
    try:
        yield camera, statuses
    finally:
        camera.stop()
        camera.stop()  # idempotent
        camera.join(PROMPT_S)
    assert not camera.is_alive(), f"the camera thread outlived stop() by {PROMPT_S} s"
    assert statuses.all[-1].state in ("stopped", "failed"), statuses.all


def collect(camera: Camera, seconds: float) -> list[Frame]:
    """The frames taken from ``camera`` over ``seconds``, as a consumer would."""
    frames: list[Frame] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        frame = camera.take()
        if frame is not None:
            frames.append(frame)
        time.sleep(0.02)
    return frames


def assert_in_order(frames: list[Frame]) -> None:
    assert all(a.t < b.t and a.index < b.index for a, b in pairwise(frames))


def test_rtsp_frames_then_reconnect_after_the_server_vanishes(
        rtsp_server_factory: Callable[[Path], RtspServer], clip4: Path) -> None:
    server = rtsp_server_factory(clip4)
    with running(server.url) as (camera, statuses):
        statuses.wait_for("streaming")
        before = collect(camera, 1.5)
        assert len(before) >= 5
        assert_in_order(before)
        for frame in before:
            assert frame.image.shape == (240, 320, 3) and frame.image.dtype == np.uint8
            assert frame.detect_image is not None and frame.detect_image.shape == (120, 160, 3)
            assert frame.captured_at is not None and abs(frame.captured_at - time.time()) < 5
        assert statuses.states()[:2] == ["connecting", "streaming"]

        server.stop()
        lost = statuses.wait_for("reconnecting")
        assert lost.reason and lost.retry_in_s is not None

        server.start()
        statuses.wait_for("streaming", count=2)
        after = collect(camera, 1.0)
        assert len(after) >= 3
        assert_in_order(before + after)
        assert camera.stats.reconnects >= 1 and camera.stats.state == "streaming"
    assert statuses.all[-1] == CameraStatus("cam", "stopped", "shut down")


def test_a_silent_stream_times_out_and_comes_back(
        rtsp_server_factory: Callable[[Path], RtspServer], clip4: Path) -> None:
    server = rtsp_server_factory(clip4)
    assert server.process is not None
    with running(server.url) as (camera, statuses):
        statuses.wait_for("streaming")
        os.kill(server.process.pid, signal.SIGSTOP)  # connected, but nothing comes any more
        try:
            assert statuses.wait_for("reconnecting").reason == "no video for 1 s"
            # The kernel still accepts connections, but the server never answers
            assert statuses.wait_for("reconnecting", 2).reason == "no answer within 2 s"
        finally:
            os.kill(server.process.pid, signal.SIGCONT)
        statuses.wait_for("streaming", count=2, timeout=15)
        assert collect(camera, 0.5)


def test_latest_frame_wins_when_nobody_takes_them(clip4: Path) -> None:
    # 60 fps sampling of a 25 fps file: every decoded frame is sampled
    with running(str(clip4), sample_fps=60, realtime=False) as (camera, statuses):
        statuses.wait_for("stopped")
        camera.join(PROMPT_S)
        assert not camera.is_alive()  # the end of a file ends the thread
        stats = camera.stats
        assert stats.frames_decoded == stats.frames_sampled == 100
        assert stats.frames_dropped == 99
        newest = camera.take()
        assert newest is not None and newest.index == 99 and newest.t == pytest.approx(3.96)
        assert camera.take() is None
    assert statuses.states() == ["streaming", "stopped"]
    assert statuses.all[-1].reason == "end of file"


def test_unreachable_url_retries_with_capped_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="stream.sources")
    url = f"rtsp://viewer:s3cret@127.0.0.1:{free_port()}/cam"
    with running(url) as (camera, statuses):
        statuses.wait_for("reconnecting", count=6)
        assert camera.stats.reconnects >= 6 and camera.stats.frames_decoded == 0
    retries = [status for status in statuses.all if status.state == "reconnecting"]
    assert statuses.all[0].state == "connecting" and "streaming" not in statuses.states()
    for attempt, status in enumerate(retries):
        assert status.reason and "refused" in status.reason.lower()
        assert status.retry_in_s is not None
        expected = min(0.1 * 2**attempt, 0.4)
        assert expected * 0.5 <= status.retry_in_s <= expected <= FAST.backoff_max_s
    assert "s3cret" not in caplog.text and "rtsp://viewer:***@127.0.0.1" in caplog.text
    assert "Traceback" not in caplog.text


def test_a_stream_the_server_refuses_is_reported_as_refused_and_retried_much_later(
        rtsp_server_factory: Callable[[Path], RtspServer], clip4: Path) -> None:
    server = rtsp_server_factory(clip4)
    with running(server.url.replace("/cam", "/no-such-stream")) as (camera, statuses):
        refused = statuses.wait_for("refused")
        assert refused.reason == "the server refused: Server returned 404 Not Found"
        # Ten times the longest wait of a connection that failed, jittered down to half.
        assert refused.retry_in_s is not None and refused.retry_in_s >= 10 * 0.4 * 0.5
        time.sleep(1.0)
        assert statuses.states() == ["connecting", "refused"]
        assert camera.stats.state == "refused" and camera.stats.frames_decoded == 0


def test_redact_url_hides_only_the_password() -> None:
    assert redact_url("rtsp://admin:pw@cam.local:554/s?x=1") == "rtsp://admin:***@cam.local:554/s?x=1"
    assert redact_url("rtsp://cam.local/s") == "rtsp://cam.local/s"
    assert redact_url("http://user@cam.local/s") == "http://user@cam.local/s"


@pytest.mark.parametrize(("name", "content", "reason"), [
    ("missing.mp4", None, "does not exist"),
    ("notes.mp4", b"not a video at all\n" * 100, "is not a video"),
])
def test_bad_files_fail_once_with_a_reason(tmp_path: Path, name: str, content: bytes | None,
                                           reason: str) -> None:
    path = tmp_path / name
    if content is not None:
        path.write_bytes(content)
    with running(str(path)) as (camera, statuses):
        failed = statuses.wait_for("failed")
        camera.join(PROMPT_S)
        assert not camera.is_alive()
    assert statuses.all == [failed]
    assert failed.reason is not None and reason in failed.reason and "\n" not in failed.reason


def test_realtime_file_is_paced_and_ends(clip4: Path) -> None:
    with running(str(clip4)) as (camera, statuses):
        time.sleep(1.0)
        newest = camera.take()
        assert newest is not None and 0.3 < newest.t < 2.0
        ended = statuses.wait_for("stopped", timeout=10)
        assert ended.reason == "end of file"
        last = camera.take()
        assert last is not None and last.t > 3.5


def test_looping_file_time_keeps_increasing(clip1: Path) -> None:
    with running(str(clip1), sample_fps=25, realtime=False, loop=True) as (camera, _):
        frames: list[Frame] = []
        end = time.monotonic() + 10
        while (not frames or frames[-1].t < 3.5) and time.monotonic() < end:
            frames.extend(collect(camera, 0.1))
    assert frames[-1].t >= 3.5, "the file did not loop"
    assert_in_order(frames)


@contextmanager
def silent_listener() -> Iterator[int]:
    """A loopback port whose connections the kernel accepts but nobody ever answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_stop_is_prompt_while_connecting() -> None:
    with silent_listener() as port, running(f"rtsp://127.0.0.1:{port}/cam", SLOW) as (
            _, statuses):
        time.sleep(0.5)
        assert statuses.states() == ["connecting"]
    assert statuses.states() == ["connecting", "stopped"]


def test_stop_is_prompt_while_waiting_to_reconnect() -> None:
    with running(f"rtsp://127.0.0.1:{free_port()}/cam", SLOW) as (_, statuses):
        assert statuses.wait_for("reconnecting").retry_in_s is not None
    assert statuses.states() == ["connecting", "reconnecting", "stopped"]


def test_stop_is_prompt_while_a_read_blocks(
        rtsp_server_factory: Callable[[Path], RtspServer], clip4: Path) -> None:
    server = rtsp_server_factory(clip4)
    assert server.process is not None
    with running(server.url, SLOW) as (_, statuses):
        statuses.wait_for("streaming")
        os.kill(server.process.pid, signal.SIGSTOP)
        time.sleep(0.5)
    assert statuses.states() == ["connecting", "streaming", "stopped"]


def test_stop_is_prompt_while_a_file_plays(clip4: Path) -> None:
    with running(str(clip4), SLOW) as (_, statuses):
        statuses.wait_for("streaming")
    assert statuses.states() == ["streaming", "stopped"]


@pytest.fixture
def hls_url(tmp_path: Path, clip4: Path) -> Iterator[str]:
    """The 4 s clip as HLS (1 s segments), served over HTTP on loopback."""
    with av.open(str(clip4)) as source, av.open(str(tmp_path / "index.m3u8"), "w", format="hls",
                                                options={"hls_time": "1",
                                                         "hls_list_size": "0"}) as playlist:
        video = source.streams.video[0]
        output = playlist.add_stream_from_template(video)
        for packet in source.demux(video):
            if packet.dts is not None:
                packet.stream = output
                playlist.mux(packet)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/index.m3u8"
    finally:
        server.shutdown()
        server.server_close()


def test_hls_over_http_streams_frames(hls_url: str) -> None:
    with running(hls_url) as (camera, statuses):
        statuses.wait_for("streaming")
        frames = collect(camera, 1.5)
        assert len(frames) >= 5
        assert_in_order(frames)
        assert frames[0].image.shape == (240, 320, 3) and frames[0].detect_image is not None
