"""The ONNX Runtime backend: exported files that verify, and the same people as torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from benchmarks.synthetic import GroundTruth
from stream.errors import ModelError
from stream.pipeline.file import analyze_video
from stream.vision import models
from stream.vision.backends import CPU_CROPS_PER_CALL, OnnxEmbedder, mtcnn_nets
from stream.vision.detect import FACENET_CROPS_PER_CALL, MtcnnDetector
from stream.vision.executor import VisionWorker
from stream.vision.export import BOX_TOLERANCE_PX, EMBEDDING_TOLERANCE, check

CPU = torch.device("cpu")


@pytest.fixture(scope="session")
def exported(weights: None) -> None:
    """MTCNN and the dlib ResNet in ONNX, exported once (kept in the model cache)."""
    models.fetch(models.onnx_model_name("mtcnn"))
    models.fetch(models.onnx_model_name("dlib-resnet"))


def test_exported_files_are_recorded_and_reproduce_torch(exported: None) -> None:
    for source in ("mtcnn", "dlib-resnet"):
        model = models.spec(models.onnx_model_name(source))
        assert models.verify(model.name) == []
        for file in model.files:
            assert models.recorded_sha256(model, file) == models.sha256_of(
                model.path(file.name))
    boxes = check("mtcnn")
    assert boxes.faces >= 10  # the sample photos show a dozen people and more
    assert boxes.max_difference <= BOX_TOLERANCE_PX
    vectors = check("dlib-resnet")
    assert vectors.faces == boxes.faces
    assert vectors.max_difference <= EMBEDDING_TOLERANCE


def test_a_damaged_export_is_refused(exported: None, tmp_path: Path) -> None:
    model = models.spec(models.onnx_model_name("mtcnn"))
    for file in model.files:
        (tmp_path / file.name).write_bytes(model.path(file.name).read_bytes())
    # RNet's weights are the middle of its file: flipping bytes there changes what it computes.
    rnet_file = tmp_path / models.mtcnn_onnx_file("rnet")
    rnet = bytearray(rnet_file.read_bytes())
    middle = len(rnet) // 2
    rnet[middle:middle + 4096] = bytes(4096)
    rnet_file.write_bytes(bytes(rnet))
    with pytest.raises(ModelError, match="ONNX"):
        check("mtcnn", tmp_path)


def people(report: Path) -> list[tuple[int, list[list[float]]]]:
    """Each person of a report: its number of faces and its appearances' spans."""
    found = json.loads((report / "report.json").read_text())["persons"]
    return [(person["detections"], [[round(a["start_s"], 1), round(a["end_s"], 1)]
                                     for a in person["appearances"]]) for person in found]


def test_onnx_gives_the_same_people_as_torch(exported: None,
                                             demo_video: tuple[Path, GroundTruth],
                                             tmp_path: Path) -> None:
    video, truth = demo_video
    results = {}
    for backend in ("torch", "onnx"):
        worker = VisionWorker(embedder="dlib-resnet", device=CPU, backend=backend)
        assert worker.backend == backend
        assert isinstance(worker.embedder, OnnxEmbedder) == (backend == "onnx")
        assert isinstance(worker.detector, MtcnnDetector)
        assert worker.detector.crops_per_call == (CPU_CROPS_PER_CALL if backend == "onnx"
                                                  else FACENET_CROPS_PER_CALL)
        analyze_video(video, tmp_path / backend, worker=worker)
        results[backend] = people(tmp_path / backend)
    assert len(results["torch"]) == len(truth.persons)
    assert results["onnx"] == results["torch"]


def test_crops_per_call_change_the_speed_only(exported: None,
                                              demo_video: tuple[Path, GroundTruth]) -> None:
    """On the CPU, R- and O-Net take their crops a few at a time (faster: the activations stay
    in cache); the faces are the same, bit for bit, as in facenet's calls of 256 and 64."""
    frames = []
    with av.open(str(demo_video[0])) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % 5 == 0:
                frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == 8:
                break
    images = torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2)
    nets = mtcnn_nets(CPU)
    found = {calls: MtcnnDetector(CPU, nets=nets, crops_per_call=calls).detect(images)
             for calls in ((1, 1), CPU_CROPS_PER_CALL, FACENET_CROPS_PER_CALL)}
    reference = found[FACENET_CROPS_PER_CALL]
    assert sum(len(faces) for faces in reference) >= len(frames)
    for result in found.values():
        for ours, theirs in zip(result, reference, strict=True):
            np.testing.assert_array_equal(ours.boxes, theirs.boxes)
            np.testing.assert_array_equal(ours.scores, theirs.scores)
            np.testing.assert_array_equal(ours.landmarks, theirs.landmarks)


def test_a_missing_onnxruntime_is_one_line(tmp_path: Path) -> None:
    stub = tmp_path / "stub" / "onnxruntime"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text("raise ImportError('not installed')\n")
    environment = {**os.environ, "PYTHONPATH": str(stub.parent)}
    done = subprocess.run([sys.executable, "-m", "stream", "models", "export-onnx"],
                          capture_output=True, text=True, env=environment, check=False)
    assert done.returncode != 0
    assert done.stderr.strip().splitlines() == [
        "facestream: error: the onnx backend needs onnxruntime, which is not installed; run "
        "`pip install onnxruntime`, or use --backend torch"]


def test_the_exported_mtcnn_runs_its_prelus_as_elementwise_operations(exported: None) -> None:
    import onnx

    model = models.spec(models.onnx_model_name("mtcnn"))
    for stage in models.MTCNN_STAGES:
        graph = onnx.load(str(model.path(models.mtcnn_onnx_file(stage)))).graph
        operations = {node.op_type for node in graph.node}
        assert "PRelu" not in operations and {"Relu", "Clip", "Mul", "Add"} <= operations


def test_the_onnx_backend_starts_without_torchvision(exported: None) -> None:
    # torchvision's import takes seconds (it brings torch's compiler); the CPU path needs none.
    script = ("import sys, torch\n"
              "from stream.vision.executor import VisionWorker\n"
              "worker = VisionWorker(embedder='dlib-resnet', device=torch.device('cpu'),"
              " backend='onnx')\n"
              "image = torch.zeros((1, 3, 120, 160), dtype=torch.uint8)\n"
              "assert worker.detector.detect(image)[0].boxes.shape == (0, 4)\n"
              "print(sorted(m for m in ('torchvision', 'facenet_pytorch', 'torch._dynamo')"
              " if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env={**os.environ, "PYTHONWARNINGS": "ignore"}, timeout=120,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
