"""The model registries: weights (verification, refusing mismatches, trust-on-first-use hashes)
and embedders (names without torch, the default rule)."""

from __future__ import annotations

import importlib
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

from stream.cli import main
from stream.config import EngineSettings
from stream.errors import ModelError
from stream.vision import embedders, models


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path


def test_unknown_model_is_a_clear_error() -> None:
    with pytest.raises(ModelError, match="known models: dlib-resnet"):
        models.spec("nope")


def test_missing_facenet_weights_say_how_to_get_them_and_the_hint_works(
        home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert models.verify("facenet-vggface2") == ["20180402-114759-vggface2.pt is missing"]
    said: list[str] = []
    with pytest.raises(ModelError) as refused:
        models.fetch("facenet-vggface2", progress=said.append)
    assert said == []  # nothing claims to fetch what is not fetched
    hints = re.findall(r"`(facestream [^`]+)`", str(refused.value))
    assert hints == ["facestream models fetch facenet-vggface2 --from PATH",
                     "facestream models fetch facenet-vggface2 --allow-download"]
    weights = tmp_path / "local.pt"
    weights.write_bytes(b"a local copy of the weights")
    command = shlex.split(hints[0].replace("PATH", str(weights)))
    assert main(["-q", *command[1:]]) == 0
    assert models.is_ready("facenet-vggface2")
    assert "facenet-vggface2: verified in" in capsys.readouterr().out


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


def test_the_embedder_registry_imports_no_torch() -> None:
    # A fresh interpreter: this one has torch already. The CLI builds its parser from these.
    code = ("import sys, stream.vision.embedders, stream.vision.models, stream.config; "
            "print('torch' in sys.modules, sorted(stream.vision.embedders.EMBEDDERS))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True)
    assert done.stdout.split(None, 1) == [
        "False", "['dlib-resnet', 'facenet-casia', 'facenet-vggface2', 'faceres']\n"]


def test_every_embedder_names_its_weights_and_a_class_that_exists() -> None:
    for spec in embedders.EMBEDDERS.values():
        assert spec.weights.name == spec.model and spec.weights.files
        module, _, attribute = spec.factory.partition(":")
        assert module.startswith("stream.vision.embedders.")
        assert callable(getattr(importlib.import_module(module), attribute))


def test_unknown_embedder_is_a_clear_error_in_code_and_config() -> None:
    with pytest.raises(ModelError, match="choose one of dlib-resnet, facenet-vggface2"):
        embedders.load_embedder("nope", torch.device("cpu"))
    with pytest.raises(ValidationError, match="unknown embedder 'nope'; choose one of dlib-resnet"):
        EngineSettings(embedder="nope")
    assert EngineSettings(embedder="facenet-casia").embedder == "facenet-casia"


def test_default_embedder_is_facenet_once_its_weights_are_cached(home: Path) -> None:
    assert embedders.default_embedder_name() == "dlib-resnet"
    facenet = models.spec("facenet-vggface2")
    facenet.directory.mkdir(parents=True)
    facenet.path(facenet.files[0].name).write_bytes(b"weights")
    assert embedders.default_embedder_name() == "facenet-vggface2"


def test_onnx_exports_are_registered_with_hashes_recorded_on_export(home: Path,
                                                                   tmp_path: Path) -> None:
    onnx = models.spec(models.onnx_model_name("mtcnn"))
    assert [file.name for file in onnx.files] == ["pnet-r2.onnx", "rnet-r2.onnx", "onet-r2.onnx"]
    for name in embedders.EMBEDDERS:
        exported = models.spec(models.onnx_model_name(name))
        assert exported.fetch_kind == "onnx" and exported.exported_from == name
    assert models.verify(onnx.name) == [f"{file.name} is missing" for file in onnx.files]
    staged = tmp_path / "pnet-r2.onnx"
    staged.write_bytes(b"an export")
    models.install(onnx, onnx.files[0], staged)
    assert models.recorded_sha256(onnx, onnx.files[0]) == models.sha256_of(staged)
    onnx.path("pnet-r2.onnx").write_bytes(b"changed")
    assert models.verify(onnx.name)[0] == "pnet-r2.onnx does not match its sha256 " + \
        models.sha256_of(staged)[:12] + "…"


def test_the_backend_is_chosen_per_device_and_checked_in_config() -> None:
    from stream.vision import backends

    assert backends.resolve("torch", torch.device("cpu")) == "torch"
    assert backends.resolve("onnx", torch.device("cpu")) == "onnx"
    assert backends.resolve("auto", torch.device("cpu")) == backends.FASTER["cpu"]
    with pytest.raises(ModelError, match="choose one of auto, torch, onnx"):
        backends.resolve("tensorflow", torch.device("cpu"))
    assert EngineSettings().backend == "auto"
    with pytest.raises(ValidationError, match="backend"):
        EngineSettings.model_validate({"backend": "tensorflow"})
