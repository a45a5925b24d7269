"""ONNX export of the networks, verified against torch on real faces before it is kept.

``export("mtcnn")`` writes P-, R- and O-Net, ``export(<embedder>)`` that embedder's network (with
its input normalisation), into the model cache through the registry, which records their sha256.
An export is kept only when ONNX Runtime reproduces torch on the face-api sample photos: every
box and landmark within a pixel, every embedding within 1e-3.
"""

from __future__ import annotations

import copy
import functools
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import torch
from PIL import Image
from torch import nn

from stream.errors import ModelError
from stream.types import Faces
from stream.vision import backends, models
from stream.vision.detect import MtcnnDetector
from stream.vision.embed import normalised
from stream.vision.embedders import load_embedder

BOX_TOLERANCE_PX = 1.0
EMBEDDING_TOLERANCE = 1e-3
OPSET = 17
CPU = torch.device("cpu")


@dataclass(frozen=True)
class Agreement:
    """How closely ONNX Runtime reproduced torch on the sample photos."""

    faces: int  # faces compared
    max_difference: float  # pixels (boxes, landmarks) or vector units (embeddings)
    unit: str

    def __str__(self) -> str:
        return f"{self.faces} faces, within {self.max_difference:.2g} {self.unit}"


def export(source: str, *, allow_download: bool = False,
           progress: Callable[[str], None] | None = None) -> Agreement:
    """Export ``source`` ("mtcnn" or an embedder's name) to ONNX into the cache, verified."""
    model = models.spec(models.onnx_model_name(source))
    with tempfile.TemporaryDirectory(prefix="facestream-onnx-") as tmp:
        staged = Path(tmp)
        if progress is not None:
            progress(f"exporting {source} to ONNX")
        if source == "mtcnn":
            _export_mtcnn(staged)
        else:
            embedder = load_embedder(source, CPU, allow_download=allow_download)
            size = embedder.chip_size
            _export(backends.export_network(embedder), staged / model.files[0].name,
                    (1, 3, size, size), ("vectors",), {0: "batch"})
        agreement = check(source, staged)
        for file in model.files:
            models.install(model, file, staged / file.name)
    return agreement


def check(source: str, directory: Path | None = None) -> Agreement:
    """Compare the ONNX files of ``source`` in ``directory`` (default: the cache) with torch on
    the sample photos; :class:`ModelError` when they disagree beyond the tolerances."""
    model = models.spec(models.onnx_model_name(source))
    directory = directory or model.directory
    photos, found = _sample_faces()
    if source == "mtcnn":
        pnet, rnet, onet = (backends.OnnxNet(directory / models.mtcnn_onnx_file(stage), CPU)
                            for stage in models.MTCNN_STAGES)
        exported = MtcnnDetector(CPU, nets=(pnet, rnet, onet))
        worst = 0.0
        for photo, expected in zip(photos, found, strict=True):
            got = exported.detect(photo[None])[0]
            if len(got) != len(expected):
                raise ModelError(f"the ONNX MTCNN found {len(got)} faces where torch found "
                                 f"{len(expected)}")
            worst = max(worst, _largest(got.boxes - expected.boxes),
                        _largest(got.landmarks - expected.landmarks))
        agreement = Agreement(sum(len(faces) for faces in found), worst, "px")
        tolerance = BOX_TOLERANCE_PX
    else:
        embedder = load_embedder(source, CPU)
        network = backends.OnnxNet(directory / model.files[0].name, CPU)
        chips = torch.cat([embedder.chips(photo.to(torch.uint8), faces)
                           for photo, faces in zip(photos, found, strict=True)])
        expected_vectors = embedder.embed_chips(chips)
        got_vectors = normalised(network(chips)[0])
        agreement = Agreement(len(chips), _largest(got_vectors - expected_vectors), "")
        tolerance = EMBEDDING_TOLERANCE
    if agreement.faces == 0:
        raise ModelError("the sample photos gave no faces to compare")
    if agreement.max_difference > tolerance:
        raise ModelError(f"the ONNX export of {source} differs from torch: {agreement} "
                         f"(tolerance {tolerance:g})")
    return agreement


def _largest(difference: npt.NDArray[np.floating[Any]]) -> float:
    return float(np.abs(difference).max()) if difference.size else 0.0


@functools.cache
def _sample_faces() -> tuple[list[torch.Tensor], list[Faces]]:
    """The face-api sample photos as (3, H, W) float tensors in 0..255, and the faces torch's
    MTCNN finds on them (found once per process: every check compares with them)."""
    directory = models.fetch("face-api-samples")
    photos = [torch.from_numpy(np.array(Image.open(directory / file.name).convert("RGB")))
              .permute(2, 0, 1).float() for file in models.spec("face-api-samples").files]
    detector = MtcnnDetector(CPU)
    return photos, [detector.detect(photo[None])[0] for photo in photos]


class ElementwisePReLU(nn.Module):
    """A PReLU as ``relu(x) + a * min(x, 0)``: the same numbers, bit for bit (where x > 0 it
    adds ``a * 0``, elsewhere it is ``0 + a * x``). ONNX Runtime's CPU kernel for ``PRelu`` took
    a third of MTCNN's time, with a layout conversion around each one; the element-wise form
    made P-, R- and O-Net about a fifth faster there."""

    slope: torch.Tensor

    def __init__(self, prelu: nn.PReLU) -> None:
        super().__init__()
        self.register_buffer("slope", prelu.weight.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        slope = self.slope.view(1, -1, *([1] * (x.dim() - 2)))
        return torch.relu(x) + slope * torch.clamp(x, max=0)


def elementwise_prelus(network: nn.Module) -> nn.Module:
    """A copy of ``network`` with every :class:`torch.nn.PReLU` an :class:`ElementwisePReLU`."""
    network = copy.deepcopy(network)
    for module in list(network.modules()):
        for name, child in list(module.named_children()):
            if isinstance(child, nn.PReLU):
                setattr(module, name, ElementwisePReLU(child))
    return network


def _export_mtcnn(directory: Path) -> None:
    from facenet_pytorch import MTCNN

    mtcnn = MTCNN(keep_all=True, device=CPU).eval()
    shapes = {"pnet": (1, 3, 64, 64), "rnet": (1, 3, 24, 24), "onet": (1, 3, 48, 48)}
    outputs = {"pnet": ("regression", "probability"), "rnet": ("regression", "probability"),
               "onet": ("regression", "landmarks", "probability")}
    for stage in models.MTCNN_STAGES:
        axes = {0: "batch", 2: "height", 3: "width"} if stage == "pnet" else {0: "batch"}
        _export(elementwise_prelus(getattr(mtcnn, stage)),
                directory / models.mtcnn_onnx_file(stage), shapes[stage], outputs[stage], axes)


def _export(module: nn.Module, path: Path, shape: tuple[int, ...], outputs: tuple[str, ...],
            axes: dict[int, str]) -> None:
    """``module`` to ``path`` with the TorchScript exporter (``dynamo=False``: the networks are
    plain, and it needs no extra packages), its input ``images`` dynamic along ``axes``."""
    dynamic = {"images": axes, **{name: {0: "batch"} for name in outputs}}
    module = module.eval().to(CPU)
    try:
        with torch.no_grad():
            torch.onnx.export(module, (torch.rand(shape) * 255,), str(path), dynamo=False,
                              input_names=["images"], output_names=list(outputs),
                              dynamic_axes=dynamic, opset_version=OPSET)
    except Exception as error:
        raise ModelError(f"could not export {path.stem} to ONNX: {error}") from error
