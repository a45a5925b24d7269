"""The face embedders there are: names, dimensions, thresholds and weights, without torch.

Each embedder is one module of this package (its network and a class that satisfies
:class:`~stream.vision.embed.Embedder`); its :class:`EmbedderSpec` below names that class as
``"module:Class"``. The module, and torch with it, is imported only when the embedder is loaded,
so the command line and the configuration offer the choices without loading a model.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from stream.errors import ModelError
from stream.vision import models

if TYPE_CHECKING:
    import torch

    from stream.vision.embed import Embedder


@dataclass(frozen=True)
class EmbedderSpec:
    """One embedder: what a gallery records of it, its weights, and the class that loads it."""

    name: str
    dim: int
    threshold: float  # calibrated Euclidean distance between unit vectors of one person
    version: str  # recorded in galleries: vectors of another version are not comparable
    model: str  # the entry of :data:`stream.vision.models.REGISTRY` holding its weights
    # "module:callable" taking (spec, device, *, weights, allow_download), returning an Embedder
    factory: str

    @property
    def weights(self) -> models.ModelSpec:
        """The registry entry of this embedder's weight files."""
        return models.spec(self.model)


EMBEDDERS: dict[str, EmbedderSpec] = {
    spec.name: spec
    for spec in (
        EmbedderSpec(name="dlib-resnet", dim=128,
                     threshold=0.325,  # between track templates (unit means); README "Calibration"
                     version="face-api-1.7.15/dlib_face_recognition_resnet_model_v1",
                     model="dlib-resnet",
                     factory="stream.vision.embedders.dlib_resnet:DlibResNetEmbedder"),
        EmbedderSpec(name="facenet-vggface2", dim=512,
                     threshold=0.9,  # as facenet-pytorch's examples
                     version="facenet-pytorch-2.6.0/20180402-114759-vggface2.pt",
                     model="facenet-vggface2",
                     factory="stream.vision.embedders.facenet:FacenetEmbedder"),
        EmbedderSpec(name="facenet-casia", dim=512, threshold=0.9,
                     version="facenet-pytorch-2.6.0/20180408-102900-casia-webface.pt",
                     model="facenet-casia",
                     factory="stream.vision.embedders.facenet:FacenetEmbedder"),
        EmbedderSpec(name="faceres", dim=1024,
                     threshold=0.75,  # between track templates; benchmarks/embedders.py
                     version="human-models-3.0.4/faceres",
                     model="faceres",
                     factory="stream.vision.embedders.faceres:FaceResEmbedder"),
    )
}
# The default: the better embedder when its weights are at hand, else the one that needs no
# download from outside a package registry.
PREFERRED = "facenet-vggface2"
OFFLINE = "dlib-resnet"


def embedder_spec(name: str) -> EmbedderSpec:
    """The embedder called ``name``; a clear error for an unknown one."""
    try:
        return EMBEDDERS[name]
    except KeyError:
        raise ModelError(f"unknown embedder {name!r}; choose one of {', '.join(EMBEDDERS)}"
                         ) from None


def load_embedder(name: str, device: torch.device, *, weights: Path | None = None,
                  allow_download: bool = False) -> Embedder:
    """The embedder called ``name`` on ``device``, its weights verified once, taken from
    ``weights``, the cache, or where its model entry says (a download only when allowed)."""
    spec = embedder_spec(name)
    module, _, attribute = spec.factory.partition(":")
    factory: Callable[..., Embedder] = getattr(importlib.import_module(module), attribute)
    return factory(spec, device, weights=weights, allow_download=allow_download)


def default_embedder_name() -> str:
    """:data:`PREFERRED` when its weights are in the cache, else :data:`OFFLINE`. Only presence
    is checked here: loading verifies the hash, once."""
    weights = EMBEDDERS[PREFERRED].weights
    present = all(weights.path(file.name).is_file() for file in weights.files)
    return PREFERRED if present else OFFLINE
