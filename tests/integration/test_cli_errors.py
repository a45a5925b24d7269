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

