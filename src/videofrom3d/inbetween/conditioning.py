"""What the inbetweening transformer reads beside the noisy latents, and its initial noise (paper 3.3).

Latents are in diffusers' CogVideoX layout ``(B, F, C, H, W)``: 13 latent frames for 49 video frames at
720x480 -> ``(1, 13, 16, 60, 90)``. The VAE compresses 4x in time, causally: latent 0 is frame 0 and latent
k >= 1 covers frames 4k-3 .. 4k.

- endpoint latents: the start and end images each VAE-encoded alone as a one-frame video, times the scaling
  factor, laid out ``[E(start), 0 x 11, E(end)]`` (ggi.py ``prepare_latents``);
- edge latents: the arc's 46 edge maps plus 3 copies of the last one (49 = 4*12 + 1 frames) encoded as one
  video -> 13 latents; the last latent then covers four copies of the end view, like E(end);
- initial latents: the arc's warped noise (13, 16, 60, 90) blended with fresh noise (Go-with-the-Flow
  "degradation", alpha 0.5 at inference), seeded.
"""

from __future__ import annotations

import numpy as np
import torch

from videofrom3d.prepare.noise_warp import degrade_noise


def video_frame_count(latent_frames: int, temporal_compression: int = 4) -> int:
    """Decoded frames of ``latent_frames`` causal latents: 13 -> 49."""
    return (latent_frames - 1) * temporal_compression + 1


def latent_frame_count(frames: int, temporal_compression: int = 4) -> int:
    """Latents of a video padded to the next valid length 4k+1: 46 -> 13, 49 -> 13."""
    return (frames - 1 + temporal_compression - 1) // temporal_compression + 1


def images_to_video_tensor(images: np.ndarray | torch.Tensor, device=None, dtype=None) -> torch.Tensor:
    """(F, H, W, 3) or (F, H, W) in [0, 1] -> (1, 3, F, H, W) in [-1, 1] (the VAE's input range)."""
    x = torch.as_tensor(np.asarray(images, dtype=np.float32)) if not isinstance(images, torch.Tensor) else images.float()
    if x.ndim == 3:
        x = x[..., None].expand(*x.shape, 3)
    if x.ndim != 4 or x.shape[-1] != 3:
        raise ValueError(f"expected (F, H, W, 3) or (F, H, W) frames, got shape {tuple(x.shape)}")
    x = x.permute(3, 0, 1, 2)[None] * 2.0 - 1.0
    return x.to(device=device, dtype=dtype)


def vae_encode_video(
    vae, video: torch.Tensor, generator: torch.Generator | None = None, mode: str = "sample"
) -> torch.Tensor:
    """(1, 3, F, H, W) in [-1, 1] -> scaled latents (1, T, 16, h, w): a posterior sample drawn from
    ``generator`` (or its mean with ``mode="mode"``) times the VAE scaling factor (0.7 for CogVideoX-5B)."""
    posterior = vae.encode(video).latent_dist
    if mode == "sample":
        z = posterior.sample(generator)
    elif mode == "mode":
        z = posterior.mode()
    else:
        raise ValueError(f'mode must be "sample" or "mode", got {mode!r}')
    scale = float(vae.config.scaling_factor)
    z = z / scale if getattr(vae.config, "invert_scale_latents", False) else z * scale
    return z.permute(0, 2, 1, 3, 4)


def _vae_io(vae, device=None) -> tuple[torch.device, torch.dtype]:
    """Where and in which dtype the VAE takes its input (``device`` wins: with sequential offload the
    weights sit on the meta device and move per layer)."""
    p = next(vae.parameters())
    return torch.device(device) if device is not None else p.device, p.dtype


def endpoint_latents(
    vae,
    start: np.ndarray | torch.Tensor,
    end: np.ndarray | torch.Tensor | None,
    latent_frames: int = 13,
    generator: torch.Generator | None = None,
    mode: str = "sample",
    device=None,
) -> torch.Tensor:
    """``[E(start), 0 x (latent_frames - 2), E(end)]`` -> (1, latent_frames, 16, h, w).

    ``start`` and ``end`` are (H, W, 3) in [0, 1], each encoded alone as a one-frame video (start first, from
    the same ``generator``). ``end=None`` leaves the last slot at zero: plain image-to-video conditioning."""
    if latent_frames < 2:
        raise ValueError(f"latent_frames must be >= 2, got {latent_frames}")
    device, dtype = _vae_io(vae, device)
    z_start = vae_encode_video(vae, images_to_video_tensor(np.asarray(start)[None], device, dtype), generator, mode)
    layout = [z_start, z_start.new_zeros((1, latent_frames - 2, *z_start.shape[2:]))]
    if end is None:
        layout.append(torch.zeros_like(z_start))
    else:
        if np.asarray(end).shape != np.asarray(start).shape:
            raise ValueError(f"start {np.asarray(start).shape} and end {np.asarray(end).shape} differ in size")
        layout.append(vae_encode_video(vae, images_to_video_tensor(np.asarray(end)[None], device, dtype), generator, mode))
    return torch.cat(layout, dim=1)


def pad_to_valid_length(frames: np.ndarray, temporal_compression: int = 4) -> np.ndarray:
    """Repeat the last frame until the count is 4k+1 (46 edge maps -> 46 + 3 copies = 49)."""
    n = len(frames)
    pad = (-(n - 1)) % temporal_compression
    if pad == 0:
        return frames
    return np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)], axis=0)


def edge_latents(
    vae, edge_maps: np.ndarray, generator: torch.Generator | None = None, mode: str = "sample", device=None
) -> torch.Tensor:
    """(F, H, W) edge maps in [0, 1] (white lines on black) -> (1, T, 16, h, w) latents of the whole arc,
    encoded as one video after repeating the last map to a valid length (46 -> 49 frames -> 13 latents)."""
    edge_maps = np.asarray(edge_maps, dtype=np.float32)
    if edge_maps.ndim not in (3, 4):
        raise ValueError(f"edge_maps must be (F, H, W) or (F, H, W, 3), got shape {edge_maps.shape}")
    device, dtype = _vae_io(vae, device)
    video = images_to_video_tensor(pad_to_valid_length(edge_maps), device, dtype)
    return vae_encode_video(vae, video, generator, mode)


def initial_latents(
    warped_noise: np.ndarray | None,
    alpha: float,
    seed: int,
    shape: tuple[int, int, int, int],
) -> torch.Tensor:
    """The latents the scheduler starts from, (1, T, C, h, w) float32: the warped noise degraded by
    :func:`~videofrom3d.prepare.noise_warp.degrade_noise` with fresh noise from
    ``numpy.random.default_rng(seed)`` (alpha 0 keeps it as it is), or plain Gaussian noise from ``seed``
    when the arc has none. ``shape`` is (T, C, h, w); a mismatch is an error naming both shapes."""
    if warped_noise is None:
        gen = torch.Generator().manual_seed(seed)
        return torch.randn((1, *shape), generator=gen, dtype=torch.float32)
    noise = np.asarray(warped_noise, dtype=np.float32)
    if noise.ndim == 5 and noise.shape[0] == 1:
        noise = noise[0]
    if tuple(noise.shape) != tuple(shape):
        raise ValueError(
            f"warped_noise has shape {tuple(noise.shape)}, expected {tuple(shape)} (latent frames, channels, "
            f"height/8, width/8 of the arc); re-run `videofrom3d prepare` at this size"
        )
    if alpha == 0.0:
        return torch.from_numpy(noise.copy())[None]
    degraded = degrade_noise(noise, alpha, np.random.default_rng(seed))
    return torch.from_numpy(np.asarray(degraded, dtype=np.float32))[None]
