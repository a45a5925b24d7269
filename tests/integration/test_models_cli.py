"""`facestream models` as users run it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from stream.cli import main


def test_list_and_verify(weights: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "list"]) == 0
    listing = capsys.readouterr().out
    assert "dlib-resnet        ready" in listing
    assert "b413e420d6840b2775fba32008db6f3cddb07d485967fb42cfcf379c16a8c589" in listing
    assert main(["models", "verify", "dlib-resnet", "face-api-samples"]) == 0
    assert capsys.readouterr().out.splitlines() == ["dlib-resnet: ok", "face-api-samples: ok"]


def test_fetch_refuses_a_wrong_file_and_verify_catches_damage(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
        ) -> None:
    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path / "home"))
    fake = tmp_path / "face-api.tgz"
    fake.write_bytes(b"something else")
    assert main(["models", "fetch", "dlib-resnet", "--from", str(fake)]) == 4
    assert "sha256 mismatch" in capsys.readouterr().err
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"weights")
    assert main(["-q", "models", "fetch", "facenet-casia", "--from", str(weights)]) == 0
    stored = tmp_path / "home" / "models" / "facenet-casia" / "20180408-102900-casia-webface.pt"
    stored.write_bytes(b"damaged")
    assert main(["models", "verify", "facenet-casia"]) == 1
    assert "does not match its sha256" in capsys.readouterr().out


def test_the_parser_offers_the_registered_embedders_without_torch() -> None:
    code = ("import sys; from stream.cli import build_parser; "
            "build_parser().parse_args(['analyze', 'v.mp4', '--out', 'o', "
            "'--embedder', 'facenet-casia']); print('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout == "False\n"


def test_export_onnx_of_facenet_verifies_and_records_it(
        weights: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    # Random weights (the real ones are a download away): the export path is the same.
    import torch
    from facenet_pytorch import InceptionResnetV1

    from stream.vision import models

    samples = models.spec("face-api-samples").directory
    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path / "home"))
    (tmp_path / "home" / "models").mkdir(parents=True)
    (tmp_path / "home" / "models" / "face-api-samples").symlink_to(samples)
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).eval().state_dict(), tmp_path / "w.pt")
    assert main(["-q", "models", "fetch", "facenet-casia", "--from", str(tmp_path / "w.pt")]
                ) == 0
    capsys.readouterr()
    assert main(["-q", "models", "export-onnx", "facenet-casia"]) == 0
    printed = capsys.readouterr().out.splitlines()
    assert printed[0].startswith("facenet-casia: verified against torch on the sample photos (")
    exported = tmp_path / "home" / "models" / "facenet-casia-onnx" / "facenet-casia.onnx"
    assert printed[1] == f"  {exported}  sha256 {models.sha256_of(exported)}"
    assert main(["models", "verify", "facenet-casia-onnx"]) == 0
    assert capsys.readouterr().out == "facenet-casia-onnx: ok\n"
