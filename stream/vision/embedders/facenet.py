"""facenet-pytorch's InceptionResnetV1 (512-d), trained on VGGFace2 or on CASIA-WebFace, on
160x160 box crops, as it was trained."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from stream.errors import ModelError
from stream.types import Faces, FloatArray
from stream.vision import models
from stream.vision.embed import box_alignment, normalised, warp
from stream.vision.embedders import EmbedderSpec


class _Normalised(nn.Module):
    """InceptionResnetV1 with facenet's input normalisation, on chips in 0..255."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, chips: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.network((chips - 127.5) / 128.0)
        return out


class FacenetEmbedder:
    """facenet-pytorch's InceptionResnetV1 on 160x160 MTCNN box crops."""

    chip_size = 160

    def __init__(self, spec: EmbedderSpec, device: torch.device, *, weights: Path | None = None,
                 allow_download: bool = False) -> None:
        from facenet_pytorch import InceptionResnetV1

        model_dir = models.fetch(spec.model, source=weights, allow_download=allow_download)
        file_name = spec.weights.files[0].name
        self.name, self.version, self.dim, self.threshold = (spec.name, spec.version, spec.dim,
                                                              spec.threshold)
        self.device = device
        self.network = InceptionResnetV1(pretrained=None, classify=False)
        try:
            state = torch.load(model_dir / file_name, map_location="cpu", weights_only=True)
        except Exception as error:
            raise ModelError(f"{model_dir / file_name} is not a torch state dict: {error}"
                             ) from error
        state = {k: v for k, v in state.items() if not k.startswith("logits.")}
        missing, unexpected = self.network.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise ModelError(f"{file_name} does not fit InceptionResnetV1 (missing {missing[:3]}, "
                             f"unexpected {unexpected[:3]})")
        self.network.eval().to(device)
        self.network_for_export: nn.Module = _Normalised(self.network).eval()

    def chips(self, image: torch.Tensor, faces: Faces) -> torch.Tensor:
        """Box crops (N, 3, 160, 160), float."""
        return warp(image, box_alignment(faces, self.chip_size).to(image.device), self.chip_size)

    def embed_chips(self, chips: torch.Tensor) -> FloatArray:
        """Unit vectors (N, 512)."""
        with torch.inference_mode():
            return normalised(self.network_for_export(chips))
