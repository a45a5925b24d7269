"""Chips cut by ``warp`` are the frame sampled where the chip's map says, zero outside it."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

from stream.vision.embed import warp

SIZE = 40


def sampled_whole(image: torch.Tensor, chip_to_image: torch.Tensor, size: int) -> torch.Tensor:
    """The definition: bilinear samples of the whole float frame at each chip pixel's image
    coordinates (pixel centres), zero outside the frame."""
    height, width = image.shape[1:]
    axis = torch.arange(size, dtype=torch.float64)
    rows, cols = torch.meshgrid(axis, axis, indexing="ij")
    chip = torch.stack([cols, rows, torch.ones_like(cols)], -1).reshape(-1, 3)
    points = chip @ chip_to_image.double().transpose(1, 2)  # (N, S*S, 2)
    grid = torch.stack(((2 * points[..., 0] + 1) / width - 1,
                        (2 * points[..., 1] + 1) / height - 1), -1).float()
    whole = image.float()[None].expand(len(chip_to_image), -1, -1, -1)
    return F.grid_sample(whole, grid.view(-1, size, size, 2), mode="bilinear",
                         padding_mode="zeros", align_corners=False)


def maps(rng: np.random.Generator, count: int, width: int, height: int) -> torch.Tensor:
    """Random similarity maps (rotation, scale, shift), some reaching past the frame's edges."""
    angle = rng.uniform(-0.6, 0.6, count)
    scale = rng.uniform(0.4, 3.0, count)
    shift_x = rng.uniform(-30, width + 10, count)
    shift_y = rng.uniform(-30, height + 10, count)
    return torch.tensor(np.stack([
        np.stack([scale * np.cos(angle), -scale * np.sin(angle), shift_x], 1),
        np.stack([scale * np.sin(angle), scale * np.cos(angle), shift_y], 1)], 1),
        dtype=torch.float32)


def test_chips_are_the_frame_sampled_where_their_maps_say() -> None:
    rng = np.random.default_rng(7)
    image = torch.from_numpy(rng.integers(0, 256, (120, 160, 3), dtype=np.uint8)).permute(2, 0, 1)
    chip_to_image = maps(rng, 24, 160, 120)
    chips = warp(image, chip_to_image, SIZE)
    expected = sampled_whole(image, chip_to_image, SIZE)
    assert chips.shape == (24, 3, SIZE, SIZE)
    assert (chips - expected).abs().max().item() < 0.05  # grey levels, of 0..255


def test_a_shift_by_whole_pixels_copies_the_frame_and_outside_is_zero() -> None:
    image = torch.arange(3 * 50 * 60, dtype=torch.float32).remainder(251).view(3, 50, 60)
    inside = torch.tensor([[[1.0, 0.0, 12.0], [0.0, 1.0, 5.0]]])
    outside = torch.tensor([[[1.0, 0.0, 500.0], [0.0, 1.0, 500.0]]])
    chips = warp(image.to(torch.uint8), torch.cat([inside, outside]), 20)
    copied = image.to(torch.uint8)[:, 5:25, 12:32].float()
    assert (chips[0] - copied).abs().max().item() < 1e-3
    assert not chips[1].any()
    assert warp(image, torch.zeros((0, 2, 3)), 20).shape == (0, 3, 20, 20)
