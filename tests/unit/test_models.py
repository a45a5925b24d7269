"""The model registry: verification, refusing mismatches, trust-on-first-use hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from stream.errors import ModelError
from stream.vision import models


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="known models: dlib-resnet"):
        models.spec("nope")


def test_missing_facenet_weights_say_how_to_get_them(home: Path) -> None:
    assert models.verify("facenet-vggface2") == ["20180402-114759-vggface2.pt is missing"]
    with pytest.raises(ModelError, match=r"--weights PATH.*--allow-download"):
        models.fetch("facenet-vggface2")


def test_local_weights_are_taken_in_and_their_hash_recorded(home: Path, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    directory = models.fetch("facenet-casia", source=weights)
    stored = directory / "20180408-102900-casia-webface.pt"
    assert stored.read_bytes() == b"weights" and models.is_ready("facenet-casia")
    stored.write_bytes(b"tampered")
    assert "does not match" in models.verify("facenet-casia")[0]


def test_a_tarball_with_the_wrong_hash_is_refused(home: Path, tmp_path: Path) -> None:
    fake = tmp_path / "face-api.tgz"
    fake.write_bytes(b"not the package")
    with pytest.raises(ModelError, match="sha256 mismatch"):
        models.fetch("dlib-resnet", source=fake)
    assert not models.is_ready("dlib-resnet")
