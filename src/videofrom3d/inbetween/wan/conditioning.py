"""What Wan VACE reads for one arc: the control video and mask (first/last-frame generation guided by our
control frames), their VACE context latents, and the initial noise.

Layout of an arc of F = N+1 frames generated as M = 4k+1 >= F frames (46 -> 49 for N = 45):
``video = [start, control_1 .. control_{N-1}, end x (M - N)]``, ``mask = [0, 1 x (N-1), 0 x (M - N)]``: the
start anchor at frame 0 and the end anchor from frame N on are known (0), the frames between generated (1)
along our control frames. The end anchor fills the padding frames (like GGI's repeated last edge map), so
the last latent (frames M-4 .. M-1 under Wan's causal 4x time compression) holds the end view alone.

Wan latents are ``(B, C, T, h, w)`` (diffusers layout), normalised per channel with the VAE's
``latents_mean``/``latents_std``: T = (M-1)/4 + 1, h, w = H/8, W/8, C = 16.
"""

from __future__ import annotations

import numpy as np
import torch

TEMPORAL = 4  # Wan VAE time compression (causal: latent 0 = frame 0, latent t = frames 4t-3 .. 4t)
SPATIAL = 8  # Wan VAE space compression
PATCH = 2  # Wan transformer patch in h and w: sizes are multiples of SPATIAL * PATCH = 16


def generated_frame_count(frames: int) -> int:
    """The frame count Wan generates for an arc of ``frames`` frames: the nearest 4k+1 >= frames (46 -> 49)."""
    return frames + (-(frames - 1)) % TEMPORAL


def latent_frame_count(frames: int) -> int:
    """Latent frames of a 4k+1-frame video: (M-1)/4 + 1 (49 -> 13, 81 -> 21)."""
    return (generated_frame_count(frames) - 1) // TEMPORAL + 1


def depth_control(depth: np.ndarray) -> np.ndarray:
    """(F, H, W) G-buffer depth along +z (0 = miss) -> (F, H, W) float32 in [0, 1], VACE's depth video.

    VACE's depth annotator (MiDaS, as ControlNet's) gives relative inverse depth, min-max normalised, near
    white and far black; that is what its depth control was trained on. We give exact inverse depth 1/z in
    that convention with ONE range for the whole arc (not per frame): a per-frame range would make a surface
    brighten or darken as other geometry enters the view, a flicker the model would copy. Misses (sky) are 0,
    the far end. An arc with no geometry is all 0."""
    depth = np.asarray(depth, dtype=np.float32)
    hit = depth > 0
    if not hit.any():
        return np.zeros_like(depth)
    inv = np.where(hit, 1.0 / np.where(hit, depth, 1.0), 0.0)
    lo, hi = float(inv[hit].min()), float(inv[hit].max())
    scaled = (inv - lo) / (hi - lo) if hi > lo else np.ones_like(inv)
    return np.where(hit, scaled, 0.0).astype(np.float32)


def control_frames(arc, kind: str) -> np.ndarray:
    """(F, H, W, 3) float32 in [0, 1]: the arc's control frames of ``kind`` ("edges": the edge maps, white
    lines on black as VACE's scribble/canny inputs; "depth": :func:`depth_control`), grey as RGB."""
    if kind == "edges":
        grey = np.asarray(arc.edge_maps, dtype=np.float32)
    elif kind == "depth":
        grey = depth_control(arc.depth)
    else:
        raise ValueError(f'control must be "edges" or "depth", got {kind!r}')
    return np.repeat(grey[..., None], 3, axis=-1)


def control_video_and_mask(start: np.ndarray, end: np.ndarray, control: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """-> video (M, H, W, 3) float32 in [0, 1] and mask (M, H, W) float32 (0 known, 1 generate) for an arc
    whose F = N+1 ``control`` frames (F, H, W, 3) run from ``start`` to ``end`` (H, W, 3); M = 4k+1 >= F.
    See the module docstring for the layout."""
    control = np.asarray(control, dtype=np.float32)
    f, h, w = control.shape[:3]
    for name, img in (("start", start), ("end", end)):
        if np.shape(img) != (h, w, 3):
            raise ValueError(f"{name} is {np.shape(img)}, the control frames are {h}x{w}")
    if f < 2:
        raise ValueError(f"an arc has at least 2 frames, got {f}")
    m = generated_frame_count(f)
    video = np.empty((m, h, w, 3), np.float32)
    video[0] = start
    video[1 : f - 1] = control[1 : f - 1]
    video[f - 1 :] = end
    mask = np.ones((m, h, w), np.float32)
    mask[0] = 0.0
    mask[f - 1 :] = 0.0
    return video, mask


def _normalise(vae, z: torch.Tensor) -> torch.Tensor:
    c = int(vae.config.z_dim)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
    return (z.float() - mean) / std


def denormalise(vae, z: torch.Tensor) -> torch.Tensor:
    c = int(vae.config.z_dim)
    mean = torch.tensor(vae.config.latents_mean, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, dtype=torch.float32, device=z.device).view(1, c, 1, 1, 1)
    return z.float() * std + mean


def vace_context(vae, video: np.ndarray, mask: np.ndarray, device=None) -> torch.Tensor:
    """VACE's context (1, 96, T, h, w) float32: the latents of the known part (video x (1 - mask)), of the part
    to generate (video x mask), 16 channels each (posterior means, normalised), and the mask folded to the
    latent grid (each 8x8 pixel block -> 64 channels, nearest-exact in time), as ``WanVACEPipeline``."""
    p = next(vae.parameters())
    device = torch.device(device) if device is not None else p.device
    x = torch.from_numpy(np.ascontiguousarray(video)).permute(3, 0, 1, 2)[None].to(device, p.dtype) * 2 - 1
    m = (torch.from_numpy(np.ascontiguousarray(mask))[None, None] > 0.5).to(device, p.dtype)
    with torch.no_grad():
        known = _normalise(vae, vae.encode(x * (1 - m)).latent_dist.mode())
        todo = _normalise(vae, vae.encode(x * m).latent_dist.mode())
    frames, h, w = mask.shape
    t = (frames - 1) // TEMPORAL + 1
    blocks = m[0, 0].float().view(frames, h // SPATIAL, SPATIAL, w // SPATIAL, SPATIAL)
    blocks = blocks.permute(2, 4, 0, 1, 3).reshape(SPATIAL * SPATIAL, frames, h // SPATIAL, w // SPATIAL)
    mask_latents = torch.nn.functional.interpolate(blocks[None], size=(t, h // SPATIAL, w // SPATIAL),
                                                   mode="nearest-exact")
    return torch.cat([known, todo, mask_latents], dim=1)


def initial_noise(
    warped_noise: np.ndarray | None, alpha: float, seed: int, shape: tuple[int, int, int, int]
) -> torch.Tensor:
    """The latents the sampler starts from, (1, C, T, h, w) float32 for ``shape`` = (C, T, h, w): Gaussian noise
    from ``torch.Generator().manual_seed(seed)`` (what ``WanVACEPipeline`` draws from that generator), or the
    arc's warped noise (T, C, h, w) blended with fresh noise as GGI does
    (:func:`videofrom3d.inbetween.conditioning.initial_latents`, alpha = ``degradation``)."""
    if warped_noise is None:
        return torch.randn((1, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.float32)
    from videofrom3d.inbetween.conditioning import initial_latents

    c, t, h, w = shape
    return initial_latents(warped_noise, alpha, seed, (t, c, h, w)).permute(0, 2, 1, 3, 4).contiguous()
