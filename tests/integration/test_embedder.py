"""The dlib ResNet port on real faces, and the facenet loading path."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stream.errors import ModelError
from stream.vision import models
from stream.vision.detect import MtcnnDetector
from stream.vision.embed import embed
from stream.vision.embedders import load_embedder
from stream.vision.embedders.facenet import FacenetEmbedder

CPU = torch.device("cpu")
# (photo, face box centre) of faces whose identity was checked by eye; "A" is in two photos.
FACES = {
    ("sample1.jpg", (1583, 319)): "A", ("sample3.jpg", (1172, 354)): "A",
    ("sample1.jpg", (503, 476)): "B", ("sample1.jpg", (929, 542)): "C",
    ("sample3.jpg", (1592, 430)): "D", ("sample3.jpg", (688, 462)): "E",
    ("sample4.jpg", (1067, 299)): "F", ("sample5.jpg", (1200, 322)): "G",
    ("sample6.jpg", (364, 630)): "H", ("sample6.jpg", (1273, 443)): "I",
}


def labelled_embeddings() -> tuple[list[str], np.ndarray]:
    detector = MtcnnDetector(CPU, detect_width=None, min_face_px=60)
    embedder = load_embedder("dlib-resnet", CPU)
    photos = models.spec("face-api-samples").directory
    labels, vectors = [], []
    for photo in sorted({name for name, _ in FACES}):
        image = torch.from_numpy(np.array(Image.open(photos / photo).convert("RGB")))
        image = image.permute(2, 0, 1).float()
        faces = detector.detect(image[None])[0]
        found = embed(embedder, image, faces)
        centres = (faces.boxes[:, :2] + faces.boxes[:, 2:]) / 2
        for (name, centre), label in FACES.items():
            if name == photo:
                nearest = int(np.argmin(np.linalg.norm(centres - np.array(centre), axis=1)))
                assert np.linalg.norm(centres[nearest] - centre) < 30, f"face {label} not found"
                labels.append(label)
                vectors.append(found[nearest])
    return labels, np.stack(vectors)


def test_port_separates_real_people_at_the_threshold(weights: None) -> None:
    labels, vectors = labelled_embeddings()
    threshold = load_embedder("dlib-resnet", CPU).threshold
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    same: list[float] = []
    different: list[float] = []
    for i, j in itertools.combinations(range(len(labels)), 2):
        distance = float(np.linalg.norm(vectors[i] - vectors[j]))
        (same if labels[i] == labels[j] else different).append(distance)
    assert same and max(same) < threshold < min(different), (same, min(different))


def test_facenet_loads_local_weights_and_embeds(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                ) -> None:
    from facenet_pytorch import InceptionResnetV1

    monkeypatch.setenv("FACESTREAM_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    with pytest.raises(ModelError, match="--allow-download"):
        load_embedder("facenet-vggface2", CPU)
    weights = tmp_path / "random.pt"
    torch.manual_seed(0)
    torch.save(InceptionResnetV1(pretrained=None).state_dict(), weights)
    embedder = load_embedder("facenet-vggface2", CPU, weights=weights)
    assert isinstance(embedder, FacenetEmbedder) and embedder.dim == 512
    chips = torch.rand(2, 3, 160, 160) * 255
    vectors = embedder.embed_chips(chips)
    assert vectors.shape == (2, 512)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    assert embedder.version.endswith("20180402-114759-vggface2.pt")
    assert models.is_ready("facenet-vggface2")  # now in the cache, hash recorded
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not torch")
    with pytest.raises(ModelError, match="not a torch state dict"):
        load_embedder("facenet-casia", CPU, weights=bad)
