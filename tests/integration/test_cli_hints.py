"""Every command the CLI suggests in an error (outside the models' weights hints, which
stream/vision words) is run exactly as printed, and must succeed: a hint that names a flag the
command rejects, or leaves out the gallery file, fails here."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from stream.cli import main
from stream.errors import GalleryError
from stream.storage import open_gallery, open_store
from stream.vision.embedders import EMBEDDERS

DLIB = EMBEDDERS["dlib-resnet"]


def error_line(capsys: pytest.CaptureFixture[str], *args: str | Path) -> str:
    """The one error line of a refused command (run in this process: no model loads)."""
    code = main(["-q", *map(str, args)])
    lines = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(lines) == 1, lines
    return lines[0]


def run_hint(text: str) -> str:
    """Runs the one `facestream ...` command quoted in ``text``; returns what it printed."""
    hints = re.findall(r"`([^`]+)`", text)
    assert len(hints) == 1 and hints[0].startswith("facestream "), text
    done = subprocess.run([sys.executable, "-m", "stream", *shlex.split(hints[0])[1:]],
                          capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, (hints[0], done.stderr)
    return done.stdout


def people(path: Path, count: int, embedder: str = DLIB.name, version: str = DLIB.version
           ) -> Path:
    """A gallery file of ``count`` people with one exemplar each."""
    gallery = open_gallery(path, dim=DLIB.dim, embedder=embedder, version=version)
    for number in range(count):
        vector = np.zeros((1, DLIB.dim), np.float32)
        vector[0, number] = 1.0
        gallery.create(vector)
    gallery.store.close()
    return path


def test_the_hints_about_people_name_the_gallery(capsys: pytest.CaptureFixture[str],
                                                  tmp_path: Path) -> None:
    gallery = people(tmp_path / "g.db", 2)
    line = error_line(capsys, "gallery", gallery, "split", "p1", "--exemplars", "99")
    assert "p1" in run_hint(line).splitlines()[0]  # `gallery G.db show p1`
    for args in (("show", "p9"), ("merge", "p1", "p9"), ("rename", "p9", "Ada")):
        line = error_line(capsys, "gallery", gallery, *args)
        assert "there is no person p9" in line
        listed = run_hint(line)  # `gallery G.db list`
        assert listed.splitlines()[1].startswith("p1 ")


@pytest.mark.slow
def test_the_hints_to_convert_a_gallery_of_another_embedder_convert_it(
        capsys: pytest.CaptureFixture[str], tmp_path: Path, weights: None) -> None:
    ours = people(tmp_path / "ours.db", 1)
    other = people(tmp_path / "other.db", 1, embedder="facenet-vggface2", version="x")
    line = error_line(capsys, "gallery", ours, "import", other)
    run_hint(line)  # `gallery other.db reembed --embedder dlib-resnet`
    assert main(["-q", "gallery", str(ours), "import", str(other)]) == 0
    capsys.readouterr()

    with pytest.raises(GalleryError) as refused:  # as analyze and run open a gallery
        open_store(ours, embedder="facenet-vggface2", version="x", dim=DLIB.dim)
    assert "reembed --embedder facenet-vggface2`" in str(refused.value)
    again = people(tmp_path / "again.db", 1, embedder="facenet-vggface2", version="x")
    with pytest.raises(GalleryError) as refused:
        open_store(again, embedder=DLIB.name, version=DLIB.version, dim=DLIB.dim)
    run_hint(str(refused.value))  # `gallery again.db reembed --embedder dlib-resnet`
