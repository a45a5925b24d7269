"""User mistakes answered by the real ``facestream`` command in its own process, before any model
loads: one line on stderr, exit code 2 (3 for an unwritable output), no traceback, and torch never
imported (``python -X importtime`` lists every module the process imported)."""

from __future__ import annotations

import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from tests.media import write_video


@dataclass(frozen=True)
class Answer:
    code: int
    stdout: str
    errors: list[str]  # stderr without the import-time lines
    imported: set[str]


def facestream(*args: str | Path) -> Answer:
    """The command as a user runs it, with the modules it imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "stream", *map(str, args)],
                          capture_output=True, text=True, timeout=60, check=False)
    lines = done.stderr.splitlines()
    imported = {line.rsplit("|", 1)[1].strip() for line in lines
                if line.startswith("import time:")}
    errors = [line for line in lines if not line.startswith("import time:")]
    return Answer(done.returncode, done.stdout, errors, imported)


def refused(*args: str | Path, code: int = 2) -> str:
    """The one error line of a command the user got wrong; it must not have imported torch."""
    answer = facestream(*args)
    assert answer.code == code and len(answer.errors) == 1, answer
    assert "Traceback" not in answer.errors[0] and answer.stdout == ""
    assert answer.imported and "torch" not in answer.imported
    return answer.errors[0]


@pytest.fixture(scope="module")
def video(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real, small video (no faces needed: the models never see it)."""
    frames = [np.full((64, 96, 3), 40 + i, np.uint8) for i in range(10)]
    return write_video(tmp_path_factory.mktemp("cli") / "clip.mp4", frames)


def test_missing_file(tmp_path: Path) -> None:
    line = refused("analyze", tmp_path / "nope.mp4", "--out", tmp_path / "o")
    assert "does not exist" in line
    assert line.endswith("does not exist; give the path of a video file")
    assert not (tmp_path / "o").exists()


def test_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n" * 100)
    assert "is not a video" in refused("analyze", text, "--out", tmp_path / "o")


def test_unwritable_output(video: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert "cannot write" in refused("analyze", video, "--out", blocker / "out", code=3)


def test_missing_weights_file(video: Path, tmp_path: Path) -> None:
    line = refused("analyze", video, "--out", tmp_path / "o", "--weights", tmp_path / "w.pt")
    assert line.endswith(f"--weights {tmp_path / 'w.pt'} is not a file; give the path of the "
                         "weights file")


@pytest.mark.parametrize(("option", "value", "why"), [
    ("--device", "gpu", "must be auto, cpu, cuda or cuda:N, got gpu"),
    ("--sample-fps", "500", "must be at most 120, got 500"),
])
def test_bad_option_values_are_argparse_errors(video: Path, tmp_path: Path, option: str,
                                               value: str, why: str) -> None:
    answer = facestream("analyze", video, "--out", tmp_path / "o", option, value)
    assert answer.code == 2 and "torch" not in answer.imported
    assert answer.errors[-1] == f"facestream analyze: error: argument {option}: {why}"
    assert not any("Traceback" in line for line in answer.errors)


def test_run_refuses_an_unsupported_url() -> None:
    line = refused("run", "ftp://x/cam")
    assert "unsupported source 'ftp://x/cam': use rtsp://" in line
    assert "Value error" not in line


def test_run_refuses_a_missing_file_source(tmp_path: Path) -> None:
    line = refused("run", f"door={tmp_path / 'nope.mp4'}")
    assert line.endswith(f"every camera failed: door: {tmp_path / 'nope.mp4'} does not exist; "
                         "give the path of a video file")


def test_run_refuses_a_file_source_that_is_not_a_video(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("these are not frames\n" * 100)
    config = tmp_path / "site.yaml"
    config.write_text(f"cameras:\n  - name: desk\n    url: file://{text}\n")
    assert f"every camera failed: desk: {text} is not a video" in refused("run", config)


def test_run_names_the_bad_line_of_its_configuration(tmp_path: Path) -> None:
    config = tmp_path / "site.yaml"
    config.write_text("cameras:\n  - name: door\n    url: rtsp://cam/1\n    sample_fps: -1\n")
    assert f"{config} line 4: cameras[0].sample_fps" in refused("run", config)


def test_run_refuses_a_missing_configuration(tmp_path: Path) -> None:
    assert "no such configuration file" in refused("run", tmp_path / "site.yaml")


def test_enroll_refuses_a_missing_photo(tmp_path: Path) -> None:
    line = refused("enroll", tmp_path / "ada.jpg", "--gallery", tmp_path / "people.db")
    assert line.endswith(f"{tmp_path / 'ada.jpg'} cannot be read (No such file or directory); "
                         "give the path of a photo")
    assert not (tmp_path / "people.db").exists()


def test_reembed_refuses_a_missing_gallery(tmp_path: Path) -> None:
    line = refused("gallery", tmp_path / "people.db", "reembed", "--embedder", "dlib-resnet")
    assert "there is no gallery file at" in line


def test_run_refuses_a_port_in_use(video: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        line = refused("run", video, "--port", str(port))
    assert line == (f"facestream: error: cannot listen on 127.0.0.1:{port} "
                    "(Address already in use); choose another --port or --host")



@pytest.mark.parametrize("flag", ["--quiet", "-q"])
def test_global_options_work_after_the_command_too(tmp_path: Path, flag: str) -> None:
    line = refused("analyze", tmp_path / "nope.mp4", "--out", tmp_path / "o", flag)
    assert line.endswith("does not exist; give the path of a video file")
    line = refused("gallery", tmp_path / "nope.db", "list", flag)
    assert "there is no gallery file at" in line
    debug = facestream("gallery", tmp_path / "nope.db", "list", "--debug")
    assert debug.code == 1 and debug.errors[0] == "Traceback (most recent call last):"
    assert "there is no gallery file at" in debug.errors[-1]


@pytest.mark.parametrize("device", ["tpu", "cuda:x"])
def test_an_impossible_device_is_one_line(video: Path, tmp_path: Path, device: str) -> None:
    for command in (("analyze", video, "--out", tmp_path / "o"), ("run", video)):
        assert refused(*command, "--device", device) == (
            f"facestream {command[0]}: error: argument --device: must be auto, cpu, cuda or "
            f"cuda:N, got {device}")


def test_a_cuda_device_that_is_not_there_is_one_line_before_the_models(
        video: Path, tmp_path: Path) -> None:
    import torch

    from stream.storage import open_store

    gallery = tmp_path / "g.db"
    open_store(gallery, embedder="dlib-resnet", version="1", dim=128).close()
    commands = [("analyze", video, "--out", tmp_path / "o"), ("run", video),
                ("enroll", video, "--gallery", tmp_path / "new.db"),
                ("gallery", gallery, "reembed", "--embedder", "dlib-resnet")]
    asked = [("cuda:99", commands)]
    if not torch.cuda.is_available():
        asked.append(("cuda", commands[:1]))
    for device, tried in asked:
        for command in tried:
            answer = facestream(*command, "--device", device)
            assert answer.code == 2 and len(answer.errors) == 1, answer
            assert answer.errors[0].startswith(f"facestream: error: device {device}: ")
            assert answer.errors[0].endswith("; use --device cpu or --device auto")
            assert "stream.vision.embed" not in answer.imported  # refused before the models
        assert not (tmp_path / "new.db").exists()


def test_run_adds_the_sources_given_with_a_configuration_to_its_cameras(
        video: Path, tmp_path: Path) -> None:
    from stream.cli import _run_config, build_parser

    config = tmp_path / "site.yaml"
    config.write_text(f"cameras:\n  - name: cam2\n    url: {video}\nserver:\n  port: 9123\n")
    args = build_parser().parse_args(["run", str(config), str(video), f"desk={video}"])
    service = _run_config(args)
    assert [(c.name, c.url) for c in service.cameras] == [
        ("cam2", str(video)), ("cam3", str(video)), ("desk", str(video))]
    assert service.server.port == 9123  # the file's settings stand
    assert "give one configuration file, not 2" in refused("run", config, config)


def test_the_progress_bar_grows_when_the_header_undercounts_the_video() -> None:
    import io
    import warnings

    from tqdm import tqdm

    from stream.cli import BAR_FORMAT, advance

    shown = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a TqdmWarning ("clamping frac") fails the test
        with tqdm(unit="s", file=shown, bar_format=BAR_FORMAT, mininterval=0) as bar:
            for t in (0.5, 2.0, 4.0, 6.5, 10.0):  # the header says 4 s; the video lasts 10
                advance(bar, t, 4.0)
                assert bar.total is not None and bar.n <= bar.total
            assert (bar.n, bar.total) == (10.0, 10.0)
    drawn = [line for line in shown.getvalue().replace("\n", "\r").split("\r") if line]
    assert len(drawn) > 3 and "100%" in drawn[-1] and "10.0/10.0 s video" in drawn[-1]
    assert not any("?" in line for line in drawn[1:])  # the total, once known, stays known
