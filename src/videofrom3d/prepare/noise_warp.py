"""Warped noise (paper 3.3): Go-with-the-Flow noise warping along the exact geometric flow, delivered as the
CogVideoX initial latents of one arc.

The inbetweening model reads the camera motion only through its initial noise: a volume of 13 latent frames
of 16 x 60 x 90 in which every frame is white N(0, 1) noise and the noise *moves with the scene* from frame to
frame. This module builds it from the prepare stage's forward flows with the discrete warper of
Go-with-the-Flow (Burgert et al., CVPR 2025), which is what the published flow LoRA (and so GGI) was trained
with. Written from the description of RyannDaGreat/CommonSource ``noise_warp.py`` (``NoiseWarper``,
``regaussianize``, ``mix_new_noise``) and the authors' ``assets/mk_noise.py`` (KIMGEONUNG/VideoFrom3D).

The warper
==========
Each cell of a fine grid (``grid_factor`` x the video resolution; 4 -> 1920 x 2880 for 480 x 720, the paper's
value) holds C noise values and a density weight w (how much "area" of earlier noise the cell carries). One
step moves the state from frame i to frame i+1 along the forward flow ``flow_i_to_j`` (``j = i+1``), rounded
to whole cells (``d = floor(g * flow + 0.5)``, nearest-upsampled from the video pixel that contains the cell):

1. **Contraction (scatter).** Every source cell p whose flow is valid sends a particle to ``p + d(p)``; particles
   that land outside the grid are dropped. A target that receives at least one particle is *covered*.
2. **Expansion (gather).** Every uncovered target q takes a copy of the source cell ``q - d(q)``. The forward
   flow evaluated at the target stands in for the backward flow there (Go-with-the-Flow does the same; the
   prepare stage only gives forward flows, and a target is uncovered precisely where the forward map is
   stretched or torn, so ``-d(q)`` is the nearest available estimate). If the flow at q is invalid, the
   source falls outside the grid or the source's own flow is invalid (its content is not visible in the next
   frame), q is a *disocclusion* and gets fresh noise. (The authors' inference code marks unobserved pixels
   by sending them out of the frame, which has the same effect.)
3. **Re-Gaussianisation by source index.** A source p used n > 1 times (its scatter particle plus every
   gather copy) gives each use ``x_p / sqrt(n) + (z_u - mean_p z)`` with fresh z ~ N(0, 1): each use is
   exactly N(0, 1), two uses of p are uncorrelated (1/n - 1/n = 0) and their sum keeps ``sqrt(n) x_p``.
   Its weight is split, ``w_p / n``. Uses are grouped by the *flat index* of their source, never by value
   (exact, immune to equal values colliding): use counts are a bincount over all cells, O(N); only the
   few uses of shared sources are grouped with ``unique`` (the common one-to-one move is a single row
   gather).
4. **Merge.** A target that receives k >= 2 particles becomes ``sum(w_u v_u) / sqrt(sum(w_u^2))`` with weight
   ``sum(w_u)``: a density-weighted average that is again exactly N(0, 1) because the v_u are independent.
   A target with a single particle takes it unchanged (so zero flow is bit-identical).
5. **Fresh cells** get N(0, 1) and the mean weight of the carried cells (Go-with-the-Flow leaves them at a
   weight near 0, a side effect of grouping them with the zero value; the weight only sets how strongly a
   cell counts in later merges, never its variance). Since fresh cells take the mean, the whole warper is
   invariant to a global scale of the weights, which are rescaled to mean 1 only when they drift far.

Because every target is a unit-norm combination of disjoint, uncorrelated unit-variance uses, every warped
frame is again i.i.d. N(0, 1) exactly, whatever the flow: the tests check this on zoom, rotation and a
camera path with occlusions. Motion under half a cell per step is lost to rounding (0.125 video px at the
default grid), the reason for the fine grid.

Three implementations give the same bytes for the same seed (numpy): a per-cell loop in
``tests/reference_noise_warp.py`` (the definition: order of the random draws, float rounding), the
vectorised code below (numpy, and torch for GPUs with torch's generator), and the compiled CPU kernel of
:mod:`noise_kernel` (numba), the default. The random draws are the same in all three: shared uses'
zero-sum noise (one (n_shared, C) draw), then fresh cells (one (n_fresh, C) draw) per step, so on a CPU the
warp costs at least the time numpy takes to draw them (~8 ns a value; scenes with sky draw fresh noise for
every sky cell at every step). ``[noise] rng = "fast"`` (the default) lifts that floor: the compiled kernel
draws counter-based normals in the same order (rows keyed by draw count) and leaves fresh cells as keys
whose values are made only when read; the reference test feeds both the same injected rows.

The arc
=======
A 46-frame arc (N = 45) gives 45 warps. The latent frames take the warped state at frames
``0, 4, ..., 44, 45`` (the video is padded to 49 = 4 * 12 + 1 frames by repeating frame 45 three times, so the
last latent frame covers the repeated end frame); each frame is area-downsampled to the 60 x 90 latent grid:
the mean over each b x b block times b (b = 32 at the default grid), i.e. block sum / b, which keeps unit
variance. Output ``(13, 16, 60, 90)`` float32, the diffusers CogVideoX ``F C H W`` layout; the authors'
``noises.npy`` is ``(13, 60, 90, 16)`` (:func:`to_official_layout`).

Degradation
===========
:func:`degrade_noise` blends with fresh noise, ``((1 - a) n + a z) / sqrt((1 - a)^2 + a^2)``, variance preserving.
Two latent frames that held the same warped noise (at shift-compensated positions) get independent z, so
their correlation drops from 1 to ``(1 - a)^2 / ((1 - a)^2 + a^2)`` (0.5 at the inference value a = 0.5).
Unlike the official code, the fresh noise comes from a seeded generator. The inbetween stage applies it
with its own alpha (``[inbetween] degradation``), so the prepared ``noise.npy`` is stored undegraded.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

import numpy as np

__all__ = [
    "NoiseConfig",
    "WarpState",
    "degrade_noise",
    "downsample_to_latent",
    "from_official_layout",
    "init_state",
    "keyframe_indices",
    "release_buffers",
    "to_official_layout",
    "warp_noise_step",
    "warped_noise_for_arc",
    "write_noise_preview",
]


@dataclass(frozen=True)
class NoiseConfig:
    """Options of the job's ``[noise]`` table. Defaults are the paper's (VideoFrom3D / Go-with-the-Flow)."""

    method: Literal["gwtf"] = "gwtf"  # the discrete Go-with-the-Flow warper the flow LoRA was trained with
    # warp grid = 4 x the video resolution (1920 x 2880 for 480 x 720; paper 3.3 / GWTF). 2 and 1 give the
    # same exact statistics 3x and 20x faster on a CPU but lose more sub-cell motion to rounding
    # (benchmarks/bench_noise.py: ~0.14 / 0.38 / 0.98 latent px of drift over a 45-frame arc at 4 / 2 / 1)
    grid_factor: int = 4
    latent_channels: int = 16  # CogVideoX latent channels
    latent_size: tuple[int, int] = (60, 90)  # (h, w) latent grid of 480 x 720 video (VAE factor 8)
    latent_frames: int = 13  # CogVideoX: 49 frames -> 13 latents
    temporal_stride: int = 4  # latent k takes frame min(4k, N): 0, 4, ..., 44, 45 for N = 45
    backend: Literal["numpy", "torch"] = "numpy"  # torch runs the same warper on ``device`` (e.g. "cuda")
    device: str = "cpu"
    # random draws of the numpy backend. "fast" (default): counter-based normals made inside the compiled
    # kernel, a fresh cell's only when a latent keyframe or a later step reads them (sky cells, refreshed
    # every step, cost nothing in between); the same statistics, ~35% less CPU on the bundled example's
    # arc, where numpy's draws alone took ~8 s (benchmarks/bench_noise.py). "numpy": numpy's Generator,
    # the same bytes as the vectorised warper and earlier releases.
    rng: Literal["fast", "numpy"] = "fast"

    def __post_init__(self) -> None:
        if self.grid_factor < 1:
            raise ValueError(f"[noise].grid_factor must be >= 1, got {self.grid_factor}")
        if self.latent_channels < 1 or self.latent_frames < 1 or self.temporal_stride < 1:
            raise ValueError("[noise].latent_channels, latent_frames and temporal_stride must be >= 1")
        if len(self.latent_size) != 2 or min(self.latent_size) < 1:
            raise ValueError(f"[noise].latent_size must be (h, w) >= 1, got {self.latent_size}")
        if self.rng not in ("fast", "numpy"):
            raise ValueError(f"[noise].rng must be fast or numpy, got {self.rng!r}")


class WarpState(NamedTuple):
    """The warper's state on its grid: ``noise`` (H, W, C) float32, ``weight`` (H, W) float32 density.

    numpy arrays or torch tensors (on any device); :func:`warp_noise_step` returns the same kind."""

    noise: Any
    weight: Any


# --------------------------------------------------------------------------------------------------------
# array backends: the warper is written once against this small set of operations


class _NumpyOps:
    name = "numpy"

    def __init__(self, generator: np.random.Generator):
        self.gen = generator

    def flatnonzero(self, mask):
        return np.flatnonzero(mask)

    def bincount(self, idx, minlength, weights=None):
        return np.bincount(idx, weights=weights, minlength=minlength)

    def unique_inverse(self, idx):
        """(k,) int -> (groups, inverse): group ids 0..G-1 by value (here: by source or target index)."""
        uniq, inverse = np.unique(idx, return_inverse=True)
        return uniq, inverse

    def randn(self, rows, cols):
        return self.gen.standard_normal((rows, cols), dtype=np.float32)

    def cat(self, parts):
        return np.concatenate(parts)

    def take_rows(self, a, idx, out):
        np.take(a, idx, axis=0, out=out, mode="clip")  # mode="raise" would buffer through a temporary

    def to_int(self, a):
        return a.astype(np.int64)

    def f32(self, a):
        return np.asarray(a, dtype=np.float32)

    def f64(self, a):
        return np.asarray(a, dtype=np.float64)

    def sqrt(self, a):
        return np.sqrt(a)

    def empty_like(self, a):
        return np.empty_like(a)

    def sum64(self, a) -> np.float64:
        # a numpy float64, not a Python float: dividing the float32 weights by it rounds once from float64,
        # as the compiled kernel and the reference do (a Python float would divide in float32)
        return a.sum(dtype=np.float64)


class _TorchOps:
    name = "torch"

    def __init__(self, generator, device):
        import torch

        self.torch = torch
        self.gen = generator
        self.device = device

    def flatnonzero(self, mask):
        return self.torch.nonzero(mask.reshape(-1)).reshape(-1)

    def bincount(self, idx, minlength, weights=None):
        if weights is not None:  # accumulate in float64 on every device
            out = self.torch.zeros(minlength, dtype=self.torch.float64, device=idx.device)
            return out.index_add_(0, idx, weights.to(self.torch.float64))
        return self.torch.bincount(idx, minlength=minlength)

    def unique_inverse(self, idx):
        return self.torch.unique(idx, return_inverse=True)

    def randn(self, rows, cols):
        t = self.torch
        return t.randn((rows, cols), generator=self.gen, dtype=t.float32, device=self.device)

    def cat(self, parts):
        return self.torch.cat(parts)

    def take_rows(self, a, idx, out):
        self.torch.index_select(a, 0, idx, out=out)

    def to_int(self, a):
        return a.to(self.torch.int64)

    def f32(self, a):
        return a.to(self.torch.float32)

    def f64(self, a):
        return a.to(self.torch.float64)

    def sqrt(self, a):
        return self.torch.sqrt(a)

    def empty_like(self, a):
        return self.torch.empty_like(a)

    def sum64(self, a) -> float:
        return float(a.to(self.torch.float64).sum())


Kernel = Literal["auto", "compiled", "vectorised"]
"""The numpy backend's implementation: "compiled" is the numba kernel (:mod:`noise_kernel`, ~10x faster),
"vectorised" the numpy code below (no numba needed; kept as the readable reference of the fast path and for
the benchmark), "auto" the compiled one when numba imports. Both give the same bytes."""


def _compiled(kernel: str) -> bool:
    if kernel not in ("auto", "compiled", "vectorised"):
        raise ValueError(f"kernel must be auto, compiled or vectorised, got {kernel!r}")
    if kernel == "vectorised":
        return False
    try:
        import numba  # noqa: F401
    except ImportError:
        if kernel == "compiled":
            raise
        return False
    return True


def _is_torch(a) -> bool:
    return type(a).__module__.startswith("torch")


def _ops_for(noise, generator):
    if _is_torch(noise):
        import torch

        if generator is None:
            generator = torch.Generator(device=noise.device)
            generator.seed()
        return _TorchOps(generator, noise.device)
    if generator is None or isinstance(generator, int | np.integer):
        generator = np.random.default_rng(generator)
    return _NumpyOps(generator)


# --------------------------------------------------------------------------------------------------------
# one warp step


def _warp_flat(ops, noise, weight, dy, dx, ok, height, width, rows, cols, out_noise, out_weight, src_of):
    """One step on flattened arrays; ``noise`` (N, C), ``weight`` (N,), integer displacements ``dy``, ``dx``
    (N,) in cells (forward, source frame -> target frame), ``ok`` (N,) bool flow validity, ``rows``/``cols``
    (N,) the cells' coordinates. Writes ``out_noise``/``out_weight``; ``src_of`` (N,) int64 is scratch space
    holding in-range indices (reused between steps so that no (N, C) temporary is ever allocated)."""
    n_cells, channels = noise.shape

    # 1. contraction: particles p -> p + d(p)
    ty = rows + dy
    tx = cols + dx
    inside = ok & (ty >= 0) & (ty < height) & (tx >= 0) & (tx < width)
    src_s = ops.flatnonzero(inside)
    dst_s = ty[src_s] * width + tx[src_s]
    arrivals = ops.bincount(dst_s, n_cells)

    # 2. expansion: uncovered targets q copy q - d(q); invalid flow at q or at the source, or a source
    #    outside the grid -> disocclusion (fresh noise)
    unc = ops.flatnonzero(arrivals == 0)
    sy = rows[unc] - dy[unc]
    sx = cols[unc] - dx[unc]
    in_grid = ok[unc] & (sy >= 0) & (sy < height) & (sx >= 0) & (sx < width)
    cand = unc[in_grid]
    src_c = sy[in_grid] * width + sx[in_grid]
    keep = ok[src_c]
    dst_g, src_g = cand[keep], src_c[keep]
    dst_f = ops.cat([unc[~in_grid], cand[~keep]])

    # 3. uses per source: its scatter particle (if it has one) + its gather copies
    copies = ops.bincount(src_g, n_cells)

    # the common case moves unchanged: a particle that is its source's only use and its target's only arrival.
    # All rows go through one gather into the output buffer; the other targets are overwritten below.
    plain = (arrivals[dst_s] == 1) & (copies[src_s] == 0)
    src_of[dst_s[plain]] = src_s[plain]
    ops.take_rows(noise, src_of, out_noise)
    ops.take_rows(weight, src_of, out_weight)

    # special uses: the other scatter particles, then all gather copies
    not_plain = ~plain
    u_src = ops.cat([src_s[not_plain], src_g])
    u_dst = ops.cat([dst_s[not_plain], dst_g])
    n_use = ops.f32(copies[u_src] + ops.to_int(inside[u_src]))
    vals = noise[u_src] / ops.sqrt(n_use)[:, None]
    u_w = weight[u_src] / n_use
    u_w[u_w < 1e-30] = 1e-30  # a cell split every step (a rounding seam) must not underflow to weight 0

    shared = ops.flatnonzero(n_use >= 2)
    if shared.shape[0]:
        # zero-sum fresh noise within each source's group of uses: z_u - mean_group(z)
        groups, group = ops.unique_inverse(u_src[shared])
        n_groups = groups.shape[0]
        z = ops.randn(shared.shape[0], channels)
        counts = ops.f64(ops.bincount(group, n_groups))
        zbar = ops.empty_like(z[:n_groups])
        for c in range(channels):
            zbar[:, c] = ops.f32(ops.bincount(group, n_groups, weights=z[:, c]) / counts)
        vals[shared] += z - zbar[group]

    # 4. targets with one use take it; targets with several merge by density
    single = ops.flatnonzero(arrivals[u_dst] <= 1)  # gather targets have 0 arrivals
    out_noise[u_dst[single]] = vals[single]
    out_weight[u_dst[single]] = u_w[single]
    multi = ops.flatnonzero(arrivals[u_dst] >= 2)
    if multi.shape[0]:
        targets, tgt = ops.unique_inverse(u_dst[multi])
        n_tgt = targets.shape[0]
        w = ops.f64(u_w[multi])
        den = ops.sqrt(ops.bincount(tgt, n_tgt, weights=w * w))
        merged = ops.empty_like(vals[:n_tgt])
        mv = vals[multi]
        for c in range(channels):
            merged[:, c] = ops.f32(ops.bincount(tgt, n_tgt, weights=w * ops.f64(mv[:, c])) / den)
        out_noise[targets] = merged
        out_weight[targets] = ops.f32(ops.bincount(tgt, n_tgt, weights=w))

    # 5. disocclusions: fresh noise with the mean weight of the carried cells
    n_fresh = dst_f.shape[0]
    if n_fresh:
        out_noise[dst_f] = ops.randn(n_fresh, channels)
        out_weight[dst_f] = 0.0
        carried = n_cells - n_fresh
        fresh_w = ops.sum64(out_weight) / carried if carried else 1.0
        out_weight[dst_f] = fresh_w if fresh_w > 0 and math.isfinite(fresh_w) else 1.0

    # keep weights in a safe range (the warper is invariant to a global scale of the weights)
    mean_w = ops.sum64(out_weight) / n_cells
    if not 1e-6 < mean_w < 1e6:
        out_weight /= mean_w


def _cell_coords(ops_name, height, width, device=None):
    if ops_name == "torch":
        import torch

        idx = torch.arange(height * width, device=device, dtype=torch.int64)
        return idx // width, idx % width
    idx = np.arange(height * width, dtype=np.int64)
    return idx // width, idx % width


def _round_disp(flow_xy, xp_torch: bool):
    """Forward flow in cells -> integer displacement ``floor(f + 0.5)`` (int64); NaN/inf -> 0 (caller masks)."""
    if xp_torch:
        import torch

        f = torch.nan_to_num(flow_xy, nan=0.0, posinf=0.0, neginf=0.0)
        return torch.floor(f + 0.5).clamp(-(2**30), 2**30).to(torch.int64)
    f = np.nan_to_num(np.asarray(flow_xy, dtype=np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    return np.clip(np.floor(f + 0.5), -(2**30), 2**30).astype(np.int64)


def warp_noise_step(state: WarpState, flow, valid=None, generator=None, kernel: Kernel = "auto") -> WarpState:
    """Warp ``state`` one frame forward along ``flow`` (H, W, 2) on the state's own grid, in cells.

    ``flow[y, x] = (dx, dy)`` is the *forward* flow from the current frame to the next: the content of cell
    (y, x) moves to (y + dy, x + dx) (the project's ``flow_i_to_j`` with j = i + 1, already scaled to the
    grid). ``valid`` (H, W) bool marks cells whose flow is meaningful (visible in both frames); non-finite
    flow counts as invalid. ``generator``: numpy ``Generator`` (or int seed) for numpy state, torch
    ``Generator`` on the state's device for torch state; None draws from an unseeded one.

    numpy state -> numpy state, torch state -> torch state on the same device. See the module docstring for
    the algorithm; the result is i.i.d. N(0, 1) whenever the input is. ``kernel`` (numpy state): see
    :data:`Kernel`; both give the same bytes.
    """
    noise, weight = state
    height, width, channels = noise.shape
    if tuple(flow.shape) != (height, width, 2):
        raise ValueError(
            f"flow must be ({height}, {width}, 2) like the state's grid, got {tuple(flow.shape)}"
        )
    ops = _ops_for(noise, generator)
    is_t = ops.name == "torch"
    if is_t:
        import torch

        flow = torch.as_tensor(flow, device=noise.device)
        finite = torch.isfinite(flow).all(dim=-1)
        ok = finite if valid is None else finite & torch.as_tensor(valid, device=noise.device).to(torch.bool)
    else:
        flow = np.asarray(flow)
        finite = np.isfinite(flow).all(axis=-1)
        ok = finite if valid is None else finite & np.asarray(valid, dtype=bool)
    disp = _round_disp(flow, is_t)
    if not is_t and _compiled(kernel):
        from videofrom3d.prepare.noise_kernel import LazyWarper

        warper = LazyWarper(height, width, channels, spare=height * width)
        warper.load(np.asarray(noise, np.float32).reshape(-1, channels), np.asarray(weight).reshape(-1))
        warper.step(disp[..., 1], disp[..., 0], ok, 1, ops.gen)
        return WarpState(warper.dense().reshape(height, width, channels).copy(),
                         warper.weight.reshape(height, width).copy())
    rows, cols = _cell_coords(ops.name, height, width, noise.device if is_t else None)
    out_noise = ops.empty_like(noise).reshape(-1, channels)
    out_weight = ops.empty_like(weight).reshape(-1)
    _warp_flat(
        ops,
        noise.reshape(-1, channels),
        weight.reshape(-1),
        disp[..., 1].reshape(-1),
        disp[..., 0].reshape(-1),
        ok.reshape(-1),
        height,
        width,
        rows,
        cols,
        out_noise,
        out_weight,
        rows * 0,  # scratch: any in-range indices
    )
    return WarpState(out_noise.reshape(height, width, channels), out_weight.reshape(height, width))


def init_state(
    height: int, width: int, channels: int = 16, generator=None, backend: str = "numpy", device="cpu"
):
    """Fresh i.i.d. N(0, 1) noise (H, W, C) float32 with unit weights."""
    if backend == "torch":
        import torch

        noise = torch.randn(
            (height, width, channels), generator=generator, dtype=torch.float32, device=device
        )
        return WarpState(noise, torch.ones((height, width), dtype=torch.float32, device=device))
    ops = _ops_for(np.empty(0), generator)
    noise = ops.randn(height * width, channels).reshape(height, width, channels)
    return WarpState(noise, np.ones((height, width), dtype=np.float32))


def downsample_to_latent(noise, latent_size: tuple[int, int]):
    """Area-downsample (H, W, C) noise to (C, h, w): block sum / b for b x b blocks (mean times b), which
    keeps i.i.d. N(0, 1) noise at unit variance. H and W must be b * h and b * w for one integer b."""
    height, width, channels = noise.shape
    h, w = latent_size
    if height % h or width % w or height // h != width // w:
        raise ValueError(f"grid {height}x{width} is not a whole number of square blocks over latent {h}x{w}")
    b = height // h
    if _is_torch(noise):
        out = noise.reshape(h, b, w, b, channels).sum(dim=(1, 3)) / b
        return out.permute(2, 0, 1).contiguous()
    # two passes over contiguous memory (rows of blocks, then columns): ~10x faster than one 2-axis sum
    rows = np.asarray(noise).reshape(h, b, w * b * channels).sum(axis=1, dtype=np.float32)
    out = rows.reshape(h, w, b, channels).sum(axis=2, dtype=np.float64) / b
    return np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32)


def keyframe_indices(frames_per_arc: int = 45, latent_frames: int = 13, stride: int = 4) -> list[int]:
    """Arc frames whose warped noise becomes latent frames: ``min(stride * k, N)``; 0, 4, ..., 44, 45 for N = 45
    (the video is padded to 49 frames by repeating the last one; latent k covers frames 4k-3..4k)."""
    n = frames_per_arc
    if n < 1:
        raise ValueError(f"frames_per_arc must be >= 1, got {n}")
    if n > stride * (latent_frames - 1):
        raise ValueError(
            f"an arc of {n} + 1 frames does not fit {latent_frames} latent frames at stride {stride} "
            f"(at most {stride * (latent_frames - 1)} + 1 frames)"
        )
    return [min(stride * k, n) for k in range(latent_frames)]


def warped_noise_for_arc(
    flows: np.ndarray,
    frames_per_arc: int = 45,
    cfg: NoiseConfig | None = None,
    seed: int = 0,
    valid: np.ndarray | None = None,
    kernel: Kernel = "auto",
) -> np.ndarray:
    """Warped noise of one arc: (latent_frames, C, h, w) float32, (13, 16, 60, 90) by default.

    ``flows`` (F-1, H, W, 2) float32: the prepare stage's consecutive forward flows ``flow_i_to_{i+1}`` at video
    resolution, in video pixels (``flows[i][y, x] = (dx, dy)``); ``valid`` (F-1, H, W) bool, visible in both
    frames (None: all finite flow is valid). On the fine grid (``cfg.grid_factor`` x H by x W) each cell takes
    the flow of the video pixel that contains it, times the grid factor (nearest upsampling), and the warper
    uses it forward (see :func:`warp_noise_step`). The same ``seed`` gives the same bytes: with
    ``cfg.rng = "numpy"`` either ``kernel`` (and earlier releases), with "fast" (compiled only) on any number
    of threads.
    """
    cfg = cfg or NoiseConfig()
    flows = np.asarray(flows)
    if flows.ndim != 4 or flows.shape[-1] != 2:
        raise ValueError(f"flows must be (F-1, H, W, 2), got {flows.shape}")
    if flows.shape[0] != frames_per_arc:
        raise ValueError(f"{frames_per_arc} frames per arc need {frames_per_arc} flows, got {flows.shape[0]}")
    if valid is not None and np.shape(valid) != flows.shape[:3]:
        raise ValueError(f"valid must be {flows.shape[:3]}, got {np.shape(valid)}")
    keys = keyframe_indices(frames_per_arc, cfg.latent_frames, cfg.temporal_stride)
    g = cfg.grid_factor
    vid_h, vid_w = flows.shape[1:3]
    height, width = vid_h * g, vid_w * g
    h, w = cfg.latent_size
    if height % h or width % w or height // h != width // w:
        raise ValueError(
            f"video {vid_w}x{vid_h} at grid factor {g} ({width}x{height}) is not a whole number of square "
            f"blocks over the latent grid {w}x{h}"
        )
    if cfg.backend == "torch":
        return _arc_torch(flows, valid, keys, cfg, seed, height, width)

    c = cfg.latent_channels
    if cfg.rng == "fast":
        if kernel == "vectorised" or not _compiled("compiled" if kernel == "auto" else kernel):
            raise ValueError('[noise].rng = "fast" needs the compiled kernel (numba); use rng = "numpy" without it')
        from videofrom3d.prepare.noise_kernel import CounterRNG

        return _arc_compiled(flows, valid, keys, cfg, CounterRNG(seed), height, width)
    rng = np.random.default_rng(seed)
    if _compiled(kernel):
        return _arc_compiled(flows, valid, keys, cfg, rng, height, width)
    state = init_state(height, width, c, rng)
    noise, weight = state.noise.reshape(-1, c), state.weight.reshape(-1)
    rows, cols = _cell_coords("numpy", height, width)
    dy = np.empty((vid_h, g, vid_w, g), dtype=np.int64)
    dx = np.empty_like(dy)
    ok = np.empty((vid_h, g, vid_w, g), dtype=bool)

    def fine_displacement(i):
        flow = flows[i]
        finite = np.isfinite(flow).all(axis=-1)
        vid_ok = finite if valid is None else finite & np.asarray(valid[i], dtype=bool)
        disp = _round_disp(flow * g, False)
        dy[...] = disp[:, None, :, None, 1]  # each video pixel's displacement on its g x g fine cells
        dx[...] = disp[:, None, :, None, 0]
        ok[...] = vid_ok[:, None, :, None]
        return dy.reshape(-1), dx.reshape(-1), ok.reshape(-1)

    out = np.empty((cfg.latent_frames, c, h, w), dtype=np.float32)
    buffers = (noise, weight, np.empty_like(noise), np.empty_like(weight), rows, cols,
               np.zeros(height * width, dtype=np.int64))
    return _warp_arc(_NumpyOps(rng), buffers, fine_displacement, frames_per_arc, keys, height, width, out)


def release_buffers() -> None:
    """Free the compiled kernel's buffers that :func:`warped_noise_for_arc` keeps for the next arc (~1.2 GB
    at the paper's grid); call it when the job's last arc is done."""
    import sys

    kernel = sys.modules.get("videofrom3d.prepare.noise_kernel")
    if kernel is not None:
        kernel.release()


def _arc_compiled(flows, valid, keys, cfg, rng, height, width):
    from videofrom3d.prepare.noise_kernel import LazyWarper, displacement

    c, g = cfg.latent_channels, cfg.grid_factor
    out = np.empty((cfg.latent_frames, c) + tuple(cfg.latent_size), dtype=np.float32)
    warper = LazyWarper.reused(height, width, c).draw(rng)

    def record(frame: int) -> None:
        for k, key in enumerate(keys):
            if key == frame:
                warper.latent(cfg.latent_size, out=out[k])

    record(0)
    vid_h, vid_w = flows.shape[1:3]
    dy, dx = np.empty((vid_h, vid_w), np.int64), np.empty((vid_h, vid_w), np.int64)
    ok, all_valid = np.empty((vid_h, vid_w), bool), np.ones((vid_h, vid_w), bool)
    for i in range(flows.shape[0]):
        vid_valid = all_valid if valid is None else np.asarray(valid[i], bool)
        if flows.dtype == np.float32:  # the prepare stage's flows: the rounding compiled too
            displacement(flows[i], vid_valid, g, dy, dx, ok)
        else:  # float64 products round differently: numpy's path
            disp = _round_disp(flows[i] * g, False)
            dy[...], dx[...] = disp[..., 1], disp[..., 0]
            ok[...] = np.isfinite(flows[i]).all(axis=-1) & vid_valid
        warper.step(dy, dx, ok, g, rng)
        record(i + 1)
    warper.keep()  # not on error: a warper whose step raised may hold half-written scratch state
    return out


def _arc_torch(flows, valid, keys, cfg, seed, height, width):
    import torch

    dev = torch.device(cfg.device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    c = cfg.latent_channels
    g = cfg.grid_factor
    h, w = cfg.latent_size
    state = init_state(height, width, c, gen, backend="torch", device=dev)
    noise, weight = state.noise.reshape(-1, c), state.weight.reshape(-1)
    rows, cols = _cell_coords("torch", height, width, dev)

    def fine_displacement(i):
        flow = torch.as_tensor(np.ascontiguousarray(flows[i]), device=dev)
        finite = torch.isfinite(flow).all(dim=-1)
        vid_ok = finite if valid is None else finite & torch.as_tensor(np.asarray(valid[i], bool), device=dev)
        disp = _round_disp(flow * g, True).repeat_interleave(g, dim=0).repeat_interleave(g, dim=1)
        ok = vid_ok.repeat_interleave(g, dim=0).repeat_interleave(g, dim=1)
        return disp[..., 1].reshape(-1), disp[..., 0].reshape(-1), ok.reshape(-1)

    out = torch.empty((cfg.latent_frames, c, h, w), dtype=torch.float32, device=dev)
    buffers = (noise, weight, torch.empty_like(noise), torch.empty_like(weight), rows, cols,
               torch.zeros(height * width, dtype=torch.int64, device=dev))
    out = _warp_arc(_TorchOps(gen, dev), buffers, fine_displacement, flows.shape[0], keys, height, width, out)
    return out.cpu().numpy()


def _warp_arc(ops, buffers, fine_displacement, steps: int, keys, height: int, width: int, out):
    """The loop both backends share: ``steps`` warp steps on the fine grid (ping-pong buffers), writing the
    latent keyframes ``keys`` (frame indices, 0 = the initial noise) into ``out`` (T, C, h, w) as they pass.

    ``buffers`` = (noise (N, C), weight (N,), their spares, rows, cols, src_of); ``fine_displacement(i)``
    gives flow step i as flat (N,) integer dy, dx and a bool ok on the fine grid."""
    cur_noise, cur_w, nxt_noise, nxt_w, rows, cols, src_of = buffers
    latent = tuple(out.shape[2:])

    def record(frame: int) -> None:
        for k, key in enumerate(keys):
            if key == frame:
                out[k] = downsample_to_latent(cur_noise.reshape(height, width, -1), latent)

    record(0)
    for i in range(steps):
        dy, dx, ok = fine_displacement(i)
        _warp_flat(ops, cur_noise, cur_w, dy, dx, ok, height, width, rows, cols, nxt_noise, nxt_w, src_of)
        cur_noise, nxt_noise = nxt_noise, cur_noise
        cur_w, nxt_w = nxt_w, cur_w
        record(i + 1)
    return out


# --------------------------------------------------------------------------------------------------------
# degradation, layouts, preview


def degrade_noise(noise, alpha: float, generator=None):
    """Variance-preserving blend with fresh noise: ``((1 - a) n + a z) / sqrt((1 - a)^2 + a^2)`` (Go-with-the-Flow
    ``mix_new_noise``; the authors' code draws z from the global RNG, ours from ``generator``).

    ``noise``: numpy array or torch tensor of any shape; ``generator``: numpy ``Generator`` or int seed (numpy)
    or torch ``Generator`` (torch, on the tensor's device). alpha = 0 returns the noise unchanged, 1 fresh noise.
    Two places that held the same warped value n (the same noise carried along the flow) get independent
    z1, z2, so their correlation becomes E[((1-a) n + a z1)((1-a) n + a z2)] / ((1-a)^2 + a^2)
    = ``(1 - a)^2 / ((1 - a)^2 + a^2)``: 0.9 at a = 0.25, 0.5 at the inference value 0.5, 0.1 at 0.75.
    """
    a = float(alpha)
    if not 0.0 <= a <= 1.0:
        raise ValueError(f"degradation alpha must be in [0, 1], got {alpha}")
    norm = math.sqrt((1 - a) ** 2 + a**2)
    if _is_torch(noise):
        import torch

        z = torch.randn(noise.shape, generator=generator, dtype=noise.dtype, device=noise.device)
        return ((1 - a) * noise + a * z) / norm
    if generator is None or isinstance(generator, int | np.integer):
        generator = np.random.default_rng(generator)
    if not isinstance(generator, np.random.Generator):
        raise TypeError(f"numpy noise needs a numpy Generator or an int seed, got {type(generator).__name__}")
    noise = np.asarray(noise)
    dtype = noise.dtype if noise.dtype in (np.float32, np.float64) else np.float32
    z = generator.standard_normal(noise.shape, dtype=dtype)
    return (((1 - a) * noise.astype(dtype) + a * z) / norm).astype(dtype)


def to_official_layout(noise):
    """(T, C, h, w) (ours, diffusers) -> (T, h, w, C), the authors' ``noises.npy`` layout."""
    if _is_torch(noise):
        return noise.permute(0, 2, 3, 1).contiguous()
    return np.ascontiguousarray(np.asarray(noise).transpose(0, 2, 3, 1))


def from_official_layout(noise):
    """(T, h, w, C) ``noises.npy`` -> (T, C, h, w)."""
    if _is_torch(noise):
        return noise.permute(0, 3, 1, 2).contiguous()
    return np.ascontiguousarray(np.asarray(noise).transpose(0, 3, 1, 2))


def write_noise_preview(noise, path: str | os.PathLike, fps: float = 8.0, scale: int = 8) -> Path:
    """mp4 of channels 0, 1, 2 of (T, C, h, w) noise as RGB (0.5 + n / 6, so +-3 sigma spans the range),
    each latent pixel shown as ``scale`` x ``scale`` video pixels (60 x 90 -> 480 x 720 by default)."""
    from videofrom3d.io.video import write_video

    arr = noise.detach().cpu().numpy() if _is_torch(noise) else np.asarray(noise)
    if arr.ndim != 4 or arr.shape[1] < 3:
        raise ValueError(f"noise must be (T, C >= 3, h, w), got {arr.shape}")
    rgb = np.clip(0.5 + arr[:, :3].astype(np.float32) / 6.0, 0.0, 1.0).transpose(0, 2, 3, 1)
    rgb = np.repeat(np.repeat(rgb, scale, axis=1), scale, axis=2)
    return write_video(path, list(rgb), fps=fps)
