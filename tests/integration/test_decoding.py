"""Where video is decoded (``engine.decoder``): the CPU, or the GPU's NVDEC through PyAV, with
the CPU as the fallback ``auto`` takes where the GPU cannot decode."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from stream.errors import InputError
from stream.sources import (
    DecodeStats,
    FrameConverter,
    hardware_decoding,
    probe,
    sampled_frames,
)
from tests.media import write_video

# No CUDA GPU here, so PyAV cannot open a CUDA device: what every CPU-only machine sees.
no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real H.264 video with a moving gradient (so that decoders have something to get
    wrong)."""
    ramp = np.linspace(0, 255, 128, dtype=np.float32)
    frames = [np.stack([np.roll(ramp, 4 * i)[None, :].repeat(96, 0),
                        np.roll(ramp, -4 * i)[:96, None].repeat(128, 1),
                        np.full((96, 128), 30.0 + 10 * i)], -1).astype(np.uint8)
              for i in range(12)]
    return write_video(tmp_path_factory.mktemp("decoding") / "gradient.mp4", frames)


def decoded(video: Path, decoder: str, device: str) -> list[np.ndarray]:
    """The video's frames as the engine decodes them for ``decoder`` and ``device``."""
    accel = hardware_decoding(decoder, device)
    return [frame.image for frame in sampled_frames(probe(video), None, DecodeStats(),
                                                    hwaccel=accel)]


def test_the_cpu_decodes_unless_the_gpu_is_asked_for_or_runs_the_models() -> None:
    assert hardware_decoding("cpu", "cuda:0") is None
    assert hardware_decoding("auto", "cpu") is None


@no_gpu
def test_auto_falls_back_to_the_cpu_where_the_gpu_cannot_decode(
        video: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="stream.sources"):
        assert hardware_decoding("auto", "cuda:0") is None
    assert "decoding video on the CPU: PyAV cannot decode on cuda:0 here" in caplog.text
    assert len(decoded(video, "auto", "cuda:0")) == 12


@no_gpu
def test_insisting_on_the_gpu_where_it_cannot_decode_is_one_line(video: Path,
                                                                 tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"^decoder cuda: PyAV cannot decode on the GPU here "
                       r"\(.+\); use --decoder cpu or --decoder auto$"):
        hardware_decoding("cuda", "cpu")
    earlier = tmp_path / "out" / "report.json"  # a run before's report, kept by a refusal
    earlier.parent.mkdir()
    earlier.write_text("{}")
    for command in (("analyze", video, "--out", tmp_path / "out"), ("run", video)):
        done = subprocess.run([sys.executable, "-m", "stream", *map(str, command),
                               "--decoder", "cuda"], capture_output=True, text=True,
                              timeout=60, check=False)
        assert done.returncode == 2
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("facestream: error: decoder cuda: ")
    assert earlier.read_text() == "{}"
    hint = subprocess.run([sys.executable, "-m", "stream", "analyze", str(video), "--out",
                           str(tmp_path / "cpu"), "--decoder", "cpu", "--device", "cpu"],
                          capture_output=True, text=True, timeout=300, check=False)
    assert hint.returncode == 0, hint.stderr  # the hint works as printed
    assert (tmp_path / "cpu" / "report.json").is_file()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_nvdec_decodes_the_frames_the_cpu_decodes(video: Path) -> None:
    assert hardware_decoding("cuda", "cuda:0") is not None
    on_gpu, on_cpu = decoded(video, "cuda", "cuda:0"), decoded(video, "cpu", "cuda:0")
    assert len(on_gpu) == len(on_cpu) == 12
    for gpu, cpu in zip(on_gpu, on_cpu, strict=True):
        assert gpu.shape == cpu.shape
        assert np.abs(gpu.astype(np.int16) - cpu).mean() < 3.0  # grey levels


def test_a_camera_decodes_the_pixels_a_file_decodes(video: Path) -> None:
    """Cameras decode with slice threads only (no frames held back); the pixels, the
    detector's copies and the cuts are those of the file's frame-threaded decoding."""
    info = probe(video)
    as_file, as_camera = (list(sampled_frames(info, None, DecodeStats(), detect_width=64,
                                              live=live)) for live in (False, True))
    assert len(as_file) == len(as_camera) == 12
    for file_frame, camera_frame in zip(as_file, as_camera, strict=True):
        small, expected = camera_frame.detect_image, file_frame.detect_image
        assert small is not None and expected is not None and small.shape == (48, 64, 3)
        assert np.array_equal(file_frame.image, camera_frame.image)
        assert np.array_equal(expected, small)
        assert file_frame.discontinuity == camera_frame.discontinuity


def test_one_converter_gives_each_frame_its_own_pixels_when_the_size_changes() -> None:
    """A converter keeps FFmpeg's scalers from frame to frame; a stream whose size changes
    (a camera switching resolution) still gets each frame's own conversion, as a frame's own
    reformatter gives it."""
    rng = np.random.default_rng(0)
    convert = FrameConverter(detect_width=80)
    for height, width in ((96, 128), (72, 160), (96, 128), (60, 64)):
        frame = av.VideoFrame.from_ndarray(
            rng.integers(0, 256, (height, width, 3), dtype=np.uint8), format="rgb24"
        ).reformat(format="yuv420p")
        converted = convert(frame, 0, 0.0)
        assert np.array_equal(converted.image, frame.to_ndarray(format="rgb24"))
        if width > 80:
            expected = frame.reformat(width=80, height=round(height * 80 / width),
                                      format="rgb24", interpolation="AREA").to_ndarray()
            assert converted.detect_image is not None
            assert np.array_equal(converted.detect_image, expected)
        else:
            assert converted.detect_image is None
