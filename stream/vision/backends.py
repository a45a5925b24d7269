"""Where the networks run: torch, or ONNX Runtime on their exported ONNX files.

The ONNX backend runs the same networks, exported by :mod:`stream.vision.export`; everything
around them (pyramid, crops, alignment, NMS) stays the torch code both backends share.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any, get_args

import numpy as np
import torch

from stream.config import Backend
from stream.errors import ModelError
from stream.types import Faces, FloatArray
from stream.vision import models
from stream.vision.detect import FACENET_CROPS_PER_CALL, Net
from stream.vision.embed import normalised

if TYPE_CHECKING:
    from torch import nn

    from stream.vision.embed import Embedder

log = logging.getLogger(__name__)

BACKENDS: tuple[str, ...] = get_args(Backend)
# The faster backend of each device, measured with `python -m benchmarks.speed`: on a 2-core CPU
# the whole analyze of its video took 7.2 s (12.0 s of CPU) on onnx against 9.1 s (13.3 s) on
# torch, medians of three runs, same BCubed F (README "Speed"). No GPU has measured onnx yet,
# so CUDA keeps torch.
FASTER = {"cpu": "onnx", "cuda": "torch"}
INSTALL_HINT = "pip install onnxruntime"


def onnxruntime() -> Any:
    """The ``onnxruntime`` module, or a one-line :class:`ModelError` saying how to install it."""
    try:
        import onnxruntime as ort  # type: ignore[import-untyped]
    except ImportError:
        raise ModelError(f"the onnx backend needs onnxruntime, which is not installed; run "
                         f"`{INSTALL_HINT}`, or use --backend torch") from None
    return ort


def resolve(backend: str, device: torch.device) -> str:
    """``torch`` or ``onnx`` for ``backend`` on ``device``: ``auto`` is the faster one measured
    there, or torch where onnxruntime (or its CUDA provider) is not installed."""
    if backend not in BACKENDS:
        raise ModelError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if backend != "auto":
        return backend
    if FASTER.get(device.type, "torch") == "torch":
        return "torch"
    try:
        providers(device)
    except ModelError:
        return "torch"
    return "onnx"


def providers(device: torch.device) -> list[str]:
    """ONNX Runtime's execution providers for ``device``: TensorRT and CUDA on a GPU where they
    are installed, else the CPU."""
    available = onnxruntime().get_available_providers()
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    wanted = [name for name in ("TensorrtExecutionProvider", "CUDAExecutionProvider")
              if name in available]
    if not wanted:
        raise ModelError(f"onnxruntime has no CUDA provider here (it has {', '.join(available)});"
                         " run `pip install onnxruntime-gpu`, or use --backend torch")
    return wanted


def session(path: Path, device: torch.device, threads: int | None = None) -> Any:
    """An inference session of the ONNX file ``path`` on ``device`` with ``threads`` intra-op
    threads (default: as many as torch uses)."""
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads or torch.get_num_threads()
    options.inter_op_num_threads = 1
    # Threads that spin between runs take the cores from torch's threads and the decoder.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    chosen = providers(device)
    if device.type == "cuda":
        index = device.index or 0
        chosen_options: list[dict[str, str]] = [{"device_id": str(index)} for _ in chosen]
        return ort.InferenceSession(str(path), options, providers=chosen,
                                    provider_options=chosen_options)
    return ort.InferenceSession(str(path), options, providers=chosen)


class OnnxNet:
    """An exported network called like the torch module it came from: tensors in, a tuple of
    tensors out, on the input's device."""

    def __init__(self, path: Path, device: torch.device, threads: int | None = None) -> None:
        self.session = session(path, device, threads)
        self.input = self.session.get_inputs()[0].name
        self.outputs = [output.name for output in self.session.get_outputs()]

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        array = np.ascontiguousarray(x.detach().to("cpu", torch.float32).numpy())
        results = self.session.run(self.outputs, {self.input: array})
        return tuple(torch.from_numpy(result).to(x.device) for result in results)


# Crops per R- and O-Net call for ONNX Runtime on the CPU: a few at a time keep the networks'
# activations in cache (the outputs are the same bit for bit for any number). On the 2-core
# Intel Xeon, one intra-op thread, 87 RNet and 27 ONet crops of the speed video's frames:
# RNet 7.0 ms against 10.7 in calls of 256, ONet 13.6 against 16.9 in calls of 64; a full
# detection 7 % faster (paired runs, 2026-12-03). On two threads the same as facenet's.
CPU_CROPS_PER_CALL = (8, 4)


def mtcnn_crops_per_call(backend: str, device: torch.device) -> tuple[int, int]:
    """Crops per R- and O-Net call for MTCNN's networks on ``backend`` and ``device``: a few
    for ONNX Runtime on the CPU; facenet's on a GPU and for torch (slower in small calls: a
    full detection 15-26 % slower in calls of 8 and 4)."""
    return (CPU_CROPS_PER_CALL if backend == "onnx" and device.type == "cpu"
            else FACENET_CROPS_PER_CALL)


def mtcnn_nets(device: torch.device, *, allow_export: bool = True, threads: int | None = None
               ) -> tuple[Net, Net, Net]:
    """P-, R- and O-Net on ONNX Runtime (exported first when the cache has none), each run with
    ``threads`` intra-op threads (default: torch's). On the 2-core CPU, under load, ONNX Runtime
    ran ONet on 6 crops (the few around known faces) in a fifteenth of torch's CPU time and on 64
    in under half: its threads do not spin."""
    model = _exported(models.onnx_model_name("mtcnn"), allow_export=allow_export)
    pnet, rnet, onet = (OnnxNet(model.path(models.mtcnn_onnx_file(stage)), device, threads)
                        for stage in models.MTCNN_STAGES)
    return pnet, rnet, onet


class OnnxEmbedder:
    """An embedder whose network runs on ONNX Runtime: the torch embedder's alignment (chips),
    its exported network (with its input normalisation) for the vectors."""

    def __init__(self, embedder: Embedder, device: torch.device, *,
                 allow_export: bool = True, threads: int | None = None) -> None:
        self.torch = embedder
        self.name, self.version, self.dim, self.threshold = (embedder.name, embedder.version,
                                                              embedder.dim, embedder.threshold)
        self.chip_size = embedder.chip_size
        model = _exported(models.onnx_model_name(embedder.name), allow_export=allow_export)
        self.network = OnnxNet(model.path(model.files[0].name), device, threads)

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """The torch embedder's aligned chips."""
        return self.torch.chips(image, faces)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors (N, dim), computed by ONNX Runtime."""
        if len(chips) == 0:
            return np.zeros((0, self.dim), np.float32)
        return normalised(self.network(chips)[0])


def _exported(name: str, *, allow_export: bool) -> models.ModelSpec:
    """The registry entry ``name`` with its ONNX files verified, exported when missing."""
    model = models.spec(name)
    problems = models.verify(name)
    if problems and allow_export:
        log.info("exporting %s to ONNX (once; the files go to %s)", model.exported_from,
                 model.directory)
        models.fetch(name)
    elif problems:
        raise ModelError(f"{name}: {'; '.join(problems)}; run `facestream models export-onnx`")
    return model


def export_network(embedder: Embedder) -> nn.Module:
    """The torch module an embedder's :meth:`embed_chips` runs (chips 0..255 in, raw vectors
    out), for the exporter; a clear error for an embedder that has none."""
    module: nn.Module | None = getattr(embedder, "network_for_export", None)
    if module is None:
        raise ModelError(f"the {embedder.name} embedder cannot be exported to ONNX")
    return module

