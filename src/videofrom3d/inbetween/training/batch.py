"""One training batch of GGI (paper 3.4): prepared clips -> clean latents, conditions and noise.

Per clip, as the authors' training does (research/ggi-and-noise-warping.md section 3): the F frames padded
to 4k+1 by repeating the last one, VAE-encoded (posterior sample) -> x_0; the first and last frame, each with
pixel noise sigma = exp(N(-3, 0.5)), each encoded alone -> ``[E(v0), 0 ..., E(vN)]``; the edge maps padded the
same way and encoded -> edge latents; the cached warped noise. Every draw comes from ``generator``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from videofrom3d.inbetween.conditioning import (
    edge_latents,
    endpoint_latents,
    images_to_video_tensor,
    pad_to_valid_length,
    vae_encode_video,
)


@dataclass
class Batch:
    """Latents in diffusers' CogVideoX layout (B, T, C, h, w), float32."""

    x0: torch.Tensor  # clean video latents (B, T, 16, h, w)
    condition: torch.Tensor  # endpoints | edges (B, T, 32, h, w)
    warped_noise: torch.Tensor  # (B, T, 16, h, w), undegraded
    prompts: list[str]


def _normal(generator: torch.Generator, shape) -> torch.Tensor:
    return torch.randn(shape, generator=generator, dtype=torch.float32)


@torch.no_grad()
def encode_clip(vae, item: dict, generator: torch.Generator, endpoint_noise: tuple[float, float], device=None):
    """(x0, condition) of one prepared clip, each (1, T, C, h, w) float32."""
    frames = np.asarray(item["frames"], dtype=np.float32) / 255.0
    edges = np.asarray(item["edges"], dtype=np.float32) / 255.0
    p = next(vae.parameters())
    dev = torch.device(device) if device is not None else p.device
    x0 = vae_encode_video(vae, images_to_video_tensor(pad_to_valid_length(frames), dev, p.dtype), generator)
    t_count = x0.shape[1]
    mean, std = endpoint_noise
    ends = []
    for img in (frames[0], frames[-1]):
        sigma = float(torch.exp(mean + std * _normal(generator, ())))
        # sigma is in the VAE's [-1, 1] units (the authors add it there); in [0, 1] units it is sigma / 2
        ends.append(img + 0.5 * sigma * _normal(generator, img.shape).numpy())
    cond_ends = endpoint_latents(vae, ends[0], ends[1], t_count, generator, device=dev)
    cond_edges = edge_latents(vae, edges, generator, device=dev)
    return x0.float(), torch.cat([cond_ends, cond_edges], dim=2).float()


def make_batch(vae, items: list[dict], generator: torch.Generator, endpoint_noise: tuple[float, float],
               device=None) -> Batch:
    """Stack :func:`encode_clip` over ``items`` (prepared clips from ``ClipDataset``)."""
    x0s, conds = zip(*(encode_clip(vae, it, generator, endpoint_noise, device) for it in items), strict=True)
    noise = torch.stack([torch.from_numpy(np.array(it["noise"], dtype=np.float32)) for it in items])
    x0 = torch.cat(x0s)
    if noise.shape != x0.shape:
        raise ValueError(f"warped noise {tuple(noise.shape)} does not match the latents {tuple(x0.shape)}")
    return Batch(x0, torch.cat(conds), noise.to(x0.device), [it["prompt"] for it in items])
