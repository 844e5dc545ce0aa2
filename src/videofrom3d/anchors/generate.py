"""Anchor views (paper 3.2): one FLUX + HED ControlNet image per arc end, chained with sparse appearance
guidance (SAG) so that anchor k agrees with anchor k-1 wherever the geometry shows the same surface.

Anchor 0 is rendered from the first edge map of arc 0; anchor k >= 1 from the last edge map of arc k-1, with
anchor k-1 warped into that view by the prepare stage's exact ``flow_end_to_start`` (visible pixels only),
the observed mask eroded by ``mask_erode_px`` (given at 720 px height, scaled with the anchor height) and
sampled to the latent grid by nearest neighbour, as the authors do; VAE-encoded and substituted into the early
latents (Eq. 1). Anchors are made at :func:`anchor_size` (the authors' 1.5x the job size, 1072x720 for
720x480) and resized for the inbetween stage. Improvements over the official script: every draw is seeded,
each distinct prompt is encoded once (text encoders freed before sampling), the previous anchor is passed in
memory.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from videofrom3d.chaining import ReplacementRule
from videofrom3d.engines import AnchorGuide
from videofrom3d.job import anchor_prompt
from videofrom3d.prepare.warp import backward_warp

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class AnchorConfig:
    """Options of the job's ``[anchors]`` table. Defaults are the official run's settings
    (KIMGEONUNG/VideoFrom3D ``sag_generate_anchor_view.py``) unless noted."""

    steps: int = 25  # Euler steps (official run)
    guidance: float = 4.0  # FLUX-dev guidance embedding (official run)
    true_cfg: float = 3.5  # true classifier-free guidance with the negative prompt; <= 1 turns it off
    true_cfg_start_step: int = 1  # official: step 0 is conditional only
    negative_prompt: str = ""  # official: empty negative
    controlnet_scale: float = 0.8  # HED ControlNet residual weight, all steps (official run)
    replace_steps: int = 12  # paper 3.2 / official num_replacement: steps i < 12 (step 0 is a no-op) -> 11 effective
    mask_erode_px: int = 24  # at 720 px height, scaled with the anchor's (official: 5x5 dilation x12 at 1072x720)
    size: tuple[int, int] | None = None  # (W, H) of the anchors; None = anchor_size(job size), official 1.5x
    encode_mode: Literal["sample", "mode"] = "sample"  # warped anchor's VAE posterior: a sample (x-flux AE.encode;
    # drawn from the anchor's seed here) or its mean
    schedule: Literal["official", "diffusers"] = "official"  # sigma shift; see anchors.sampling
    style: int = 0  # which [[style]] identifier the anchors use
    no_replace_anchors: tuple[int, ...] = ()  # anchors generated without SAG (their style changes on purpose)
    replace_on_prompt_change: bool = False  # paper 3.2: no SAG across a style or prompt change (a transition)
    max_sequence_length: int = 512  # T5 tokens (x-flux uses 512)
    lora_scale: float = 1.0  # strength of the alignment LoRA
    device: str = "auto"  # "auto" = cuda if available
    dtype: str = "auto"  # "auto" = bfloat16 on GPU, float32 on CPU
    memory: Literal["auto", "none", "model", "sequential", "24gb", "16gb", "12gb"] = "auto"
    # a mode (see anchors.components) or a card size's preset (MEMORY_PRESETS there)
    fp8: bool = False  # store transformer/ControlNet weights in float8 (upcast per layer)
    # speed (videofrom3d.speed): a preset and its switches; None = the preset's choice
    preset: Literal["none", "exact", "fast"] = "none"
    cfg_batch: bool | None = None  # the true-CFG passes in one batch of 2
    compile: bool | None = None  # regional torch.compile of the transformer/ControlNet blocks
    attention: str | None = None  # diffusers attention backend: "auto", "native", "flash", "_flash_3", "sage"...
    fp8_matmul: bool | None = None  # torchao float8 matmuls (GPU with compute capability >= 8.9)
    cache: Literal["none", "first_block", "taylorseer"] | None = None  # diffusers step-cache hooks
    cache_threshold: float = 0.05  # first-block cache (diffusers' default; ParaAttention)
    cache_interval: int = 3  # TaylorSeer: full compute every n steps
    cache_start_step: int = 12  # no caching while SAG replaces latents (replace_steps, paper 3.2)

    def __post_init__(self):
        if self.steps < 1:
            raise ValueError(f"[anchors].steps must be >= 1, got {self.steps}")
        from videofrom3d.speed import check_speed_options

        check_speed_options(self, "anchors")
        if self.encode_mode not in ("sample", "mode"):
            raise ValueError(f'[anchors].encode_mode must be "sample" or "mode", got {self.encode_mode!r}')
        if self.replace_steps < 0:
            raise ValueError(f"[anchors].replace_steps must be >= 0, got {self.replace_steps}")
        if self.mask_erode_px < 0:
            raise ValueError(f"[anchors].mask_erode_px must be >= 0, got {self.mask_erode_px}")
        if self.size is not None:
            if len(self.size) != 2 or any(int(v) != v or v < 16 or v % 16 for v in self.size):
                raise ValueError(f"[anchors].size must be [width, height], multiples of 16 (FLUX's 2x2 latent "
                                 f"patches), got {list(self.size)}")
            object.__setattr__(self, "size", (int(self.size[0]), int(self.size[1])))


def anchor_size(job_size: tuple[int, int], override: tuple[int, int] | None = None,
                scale: float = 1.5, multiple: int = 16) -> tuple[int, int]:
    """(W, H) FLUX generates anchors at: ``override`` when given, else ``scale`` x the job's (W, H) floored to
    ``multiple``. The authors render edge maps at 1.5x (1080x720 for a 720x480 video) and floor them to 16 for
    FLUX: 1072x720 (research/official-code.md section 2)."""
    if override is not None:
        return int(override[0]), int(override[1])
    w, h = job_size
    return (max(multiple, int(w * scale) // multiple * multiple), max(multiple, int(h * scale) // multiple * multiple))


def erode_px_at(height: int, px_at_720: int = 24) -> int:
    """The mask erosion in pixels for an anchor ``height`` px tall: ``px_at_720`` scaled with the height (the
    authors' 24 px were measured on 720 px anchors)."""
    return int(round(px_at_720 * height / 720))


def job_prompts(job, cfg: AnchorConfig) -> list[str]:
    """Every distinct prompt a job's anchors can use (encoded once up front): the default style's identifier
    for unlisted anchors and each anchor named by ``[anchor_prompts]`` or ``[anchor_styles]``."""
    named = sorted({k for k, _ in job.anchor_prompts} | {k for k, _ in job.anchor_styles})
    out = [anchor_prompt(job, -1, cfg.style)] + [anchor_prompt(job, k) for k in named]
    return list(dict.fromkeys(out))


def replacement_rule(cfg: AnchorConfig) -> ReplacementRule:
    """When SAG applies, from the ``[anchors]`` options."""
    return ReplacementRule(cfg.replace_steps, tuple(cfg.no_replace_anchors), cfg.replace_on_prompt_change)


def make_anchor_guide(previous_anchor: np.ndarray, arc, erode_px: int = 24, flow=None) -> AnchorGuide:
    """Warp anchor k-1 (the start view of ``arc``) into its end view (anchor k) with the arc's exact
    ``flow_end_to_start`` and visibility; the observed mask is eroded by ``erode_px`` at 720 px height
    (square kernel), scaled with the anchor height. ``flow``: ``(flow_end_to_start, valid)`` at the anchor
    size (:func:`videofrom3d.prepare.anchor_inputs.anchor_view_inputs`) in place of the arc's; either way its
    size must be the previous anchor's."""
    flow_e2s, valid = flow if flow is not None else (arc.flow_end_to_start, arc.flow_end_to_start_valid)
    if flow_e2s.shape[:2] != previous_anchor.shape[:2]:
        raise ValueError(f"end->start flow is {flow_e2s.shape[1]}x{flow_e2s.shape[0]} but the previous anchor "
                         f"{previous_anchor.shape[1]}x{previous_anchor.shape[0]}; make the flow at the anchor size")
    warped, observed = backward_warp(previous_anchor, flow_e2s, valid)
    px = erode_px_at(previous_anchor.shape[0], erode_px)
    return AnchorGuide(np.clip(warped, 0, 1).astype(np.float32), erode_mask(observed, px))


def erode_mask(mask: np.ndarray, px: int) -> np.ndarray:
    """Shrink a bool mask by ``px`` pixels (Chebyshev distance); the image border does not erode."""
    if px <= 0:
        return mask.astype(bool)
    kernel = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    return cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=1).astype(bool)


class AnchorGenerator:
    """FLUX + HED ControlNet (+ style LoRA) kept loaded across anchors.

    ``generate(edge_map (H, W) f32, prompt, seed, guide=None, arc=None) -> (H, W, 3) f32 in [0, 1]``. The
    initial noise depends only on ``seed`` and the size (drawn on the CPU), so passing the job's seed to
    every anchor reproduces the official "same initial noise" setting. ``arc`` is accepted for interface
    compatibility with the preview engine and ignored. ``references``: per style index the Redux tokens
    (:mod:`videofrom3d.align.reference`) appended to the prompt's T5 tokens for the transformer only;
    ``style`` picks one per anchor (default ``[anchors] style``)."""

    def __init__(self, comps, cfg: AnchorConfig, prompts: Sequence[str] = (), references: Sequence | None = None):
        from videofrom3d.anchors.components import PromptEncoder, apply_speed

        self.comps = comps
        self.cfg = cfg
        self.references = list(references) if references is not None else None  # per style (1, R, D) or None
        self.speed = apply_speed(comps, cfg)
        self.text = PromptEncoder(comps, cfg.max_sequence_length)
        self.text.encode_all([cfg.negative_prompt, *prompts])
        self.text.release()
        self.replacement = replacement_rule(cfg)

    def guide(self, previous_anchor: np.ndarray, arc, flow=None) -> AnchorGuide:
        """Anchor k-1 warped into ``arc``'s end view, its mask eroded by ``[anchors] mask_erode_px``."""
        return make_anchor_guide(previous_anchor, arc, self.cfg.mask_erode_px, flow=flow)

    def render_anchor(self, arc, frame: int, prompt: str, seed: int, guide: AnchorGuide | None = None,
                      edge_map: np.ndarray | None = None, style: int | None = None) -> np.ndarray:
        """The anchor at local ``frame`` of the prepared ``arc`` (the engine interface); ``edge_map``: the view's
        edge map at the anchor size in place of the arc's; ``style``: the style index whose reference tokens it
        uses (reference mode)."""
        return self.generate(arc.edge_maps[frame] if edge_map is None else edge_map, prompt, seed, guide=guide,
                             style=style)

    def generate(self, edge_map: np.ndarray, prompt: str, seed: int, guide: AnchorGuide | None = None,
                 arc: Any = None, step_callback=None, style: int | None = None) -> np.ndarray:
        """The anchor image (H, W, 3) f32 in [0, 1] for ``edge_map`` (H, W) f32 (white lines on black)."""
        from videofrom3d.models import cpu_heap_reuse

        with cpu_heap_reuse(self.comps.device):
            latents = self.generate_latents(edge_map, prompt, seed, guide, step_callback, style=style)
            return decode_image(self.comps, latents)

    def reference_for(self, style: int | None):
        """The reference tokens of style index ``style`` (default ``[anchors] style``), or None without any."""
        if self.references is None:
            return None
        s = self.cfg.style if style is None else int(style)
        if not 0 <= s < len(self.references):
            raise ValueError(f"style {s} has no reference tokens: the align stage encoded {len(self.references)}")
        return self.references[s]

    def generate_latents(self, edge_map: np.ndarray, prompt: str, seed: int, guide: AnchorGuide | None = None,
                         step_callback=None, style: int | None = None):
        """Like :meth:`generate` but returns the final latents (1, C, H/8, W/8) before VAE decoding."""
        import torch

        from videofrom3d.anchors.sampling import flux_sigmas, sample_anchor

        c, cfg = self.comps, self.cfg
        edge_map = np.asarray(edge_map, dtype=np.float32)
        if edge_map.ndim == 3:
            edge_map = edge_map.mean(axis=2)
        height, width = edge_map.shape
        f = c.vae_scale_factor * 2
        if height % f or width % f:
            raise ValueError(f"anchor size {width}x{height} must be divisible by {f} for FLUX's 2x2 latent patches; "
                             f"try {width // f * f}x{height // f * f}")
        h, w = height // c.vae_scale_factor, width // c.vae_scale_factor
        control = control_image(edge_map)
        noise = torch.randn((1, c.latent_channels, h, w), generator=torch.Generator("cpu").manual_seed(int(seed)))
        noise = noise.to(c.device)
        embeds, pooled = self.text.encode(prompt)
        cn_embeds = None
        reference = self.reference_for(style)
        if reference is not None:  # the ControlNet keeps the text-only context it was trained with
            from videofrom3d.align.reference import append_reference

            cn_embeds, embeds = embeds, append_reference(embeds, reference)
        neg_embeds = neg_pooled = None
        if cfg.true_cfg > 1:
            neg_embeds, neg_pooled = self.text.encode(cfg.negative_prompt)
        z_obs = mask = None
        if guide is not None and cfg.replace_steps > 0:
            gen = torch.Generator("cpu").manual_seed(int(seed) + 1) if cfg.encode_mode == "sample" else None
            z_obs = encode_image(c, guide.warped_previous, gen)
            mask = latent_mask(guide.observed_mask, c.vae_scale_factor).to(c.device)
        sigmas, timesteps = flux_sigmas(c.scheduler, cfg.steps, h, w, cfg.schedule, device=c.device)
        with c.on_device(c.transformer, c.controlnet):
            return sample_anchor(
                c.transformer, c.controlnet, control.to(c.device), noise, sigmas, timesteps, embeds, pooled,
                neg_embeds, neg_pooled, guidance=cfg.guidance, true_cfg=cfg.true_cfg,
                true_cfg_start_step=cfg.true_cfg_start_step, controlnet_scale=cfg.controlnet_scale,
                replace_steps=cfg.replace_steps, observed_latents=z_obs, observed_mask=mask,
                controlnet_prompt_embeds=cn_embeds, step_callback=step_callback,
                progress=log.isEnabledFor(logging.INFO), cfg_batch=self.speed.cfg_batch,
                cache_start_step=cfg.cache_start_step,
            )

    def close(self) -> None:
        self.comps.close()


def control_image(edge_map: np.ndarray):
    """(H, W) f32 edge map in [0, 1] -> (1, 3, H, W) ControlNet input in [-1, 1] (the HED map's three equal
    channels, scaled as x-flux does)."""
    import torch

    edge = torch.from_numpy(np.clip(np.asarray(edge_map, dtype=np.float32), 0, 1) * 2 - 1)
    return edge[None, None].expand(1, 3, *edge.shape).contiguous()


def latent_posterior(comps, image: np.ndarray):
    """(H, W, 3) f32 [0, 1] -> the VAE posterior's (mean, std) in normalised latents ``(z - shift) * scale``,
    each (1, C, h, w) float32 on the CPU."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)).permute(2, 0, 1)[None] * 2 - 1
    vae = comps.vae
    with torch.no_grad(), comps.on_device(vae):
        dist = vae.encode(x.to(comps.device, comps.dtype)).latent_dist
    scale, shift = vae.config.scaling_factor, vae.config.shift_factor
    return ((dist.mean.float() - shift) * scale).cpu(), (dist.std.float() * scale).cpu()


def encode_image(comps, image: np.ndarray, generator=None):
    """(H, W, 3) f32 [0, 1] -> (1, C, h, w) normalised VAE latents on ``comps.device``: a posterior sample drawn
    from ``generator`` (a CPU torch generator; x-flux's ``AE.encode`` samples), or the mean when None."""
    import torch

    mean, std = latent_posterior(comps, image)
    if generator is not None:
        mean = mean + std * torch.randn(mean.shape, generator=generator)
    return mean.to(comps.device)


def decode_image(comps, latents) -> np.ndarray:
    """(1, C, h, w) normalised latents -> (H, W, 3) f32 in [0, 1]."""
    import torch

    vae = comps.vae
    z = latents.float() / vae.config.scaling_factor + vae.config.shift_factor
    with torch.no_grad(), comps.on_device(vae):
        img = vae.decode(z.to(comps.device, comps.dtype), return_dict=False)[0]
    return ((img[0].float().clamp(-1, 1) + 1) / 2).permute(1, 2, 0).cpu().numpy().astype(np.float32)


def latent_mask(observed: np.ndarray, factor: int):
    """(H, W) bool -> (1, 1, H/f, W/f) bool by nearest sampling (torch's ``nearest``: cell (i, j) takes pixel
    (i*f, j*f)), as the authors resize their mask to the latent grid; the erosion before it keeps the seam
    away from unobserved content."""
    import torch

    m = torch.from_numpy(np.asarray(observed, dtype=bool)).float()[None, None]
    h, w = m.shape[-2] // factor, m.shape[-1] // factor
    return torch.nn.functional.interpolate(m, size=(h, w), mode="nearest") > 0.5


def load_anchor_generator(job, cfg: AnchorConfig | None = None, models: Any = "real",
                          lora_path: str | Path | None = None) -> AnchorGenerator:
    """Build the anchor generator for ``job``: ``models="real"`` loads FLUX.1-dev + the HED ControlNet (ids or
    folders from the job's ``[models]``; see :mod:`videofrom3d.models`), ``"tiny-random"`` builds tiny random
    models (a smoke test: outputs are noise), or pass ready :class:`FluxComponents`. ``lora_path``: the
    alignment LoRA (``videofrom3d align``), or the reference mode's ``reference.safetensors``: its Redux tokens
    (and the quick recipe's, with its T5 length) go to the generator. Every prompt the job can use is encoded
    here, once."""
    import dataclasses

    from videofrom3d.align.lora import load_style_lora
    from videofrom3d.align.reference import read_style_extras
    from videofrom3d.anchors.components import (
        FluxComponents,
        load_flux_components,
        place_components,
        tiny_flux_components,
    )

    cfg = cfg or AnchorConfig()
    references = None
    if lora_path is not None:
        references, text_length, has_lora = read_style_extras(lora_path)
        if text_length is not None:  # the quick recipe's shorter T5 sequence, used as it was trained
            cfg = dataclasses.replace(cfg, max_sequence_length=text_length)
        lora_path = lora_path if has_lora else None
    if isinstance(models, FluxComponents):
        comps = models
        if lora_path is not None:
            load_style_lora(comps, lora_path, scale=cfg.lora_scale)
    elif models == "tiny-random":
        comps = tiny_flux_components(seed=0)
        if lora_path is not None:
            load_style_lora(comps, lora_path, scale=cfg.lora_scale)
    elif models == "real":
        comps = load_flux_components(job.model("flux"), job.model("controlnet_hed"), device=cfg.device,
                                     dtype=cfg.dtype, memory=cfg.memory, fp8=cfg.fp8, place=False)
        if lora_path is not None:
            load_style_lora(comps, lora_path, scale=cfg.lora_scale)
        place_components(comps)  # after the LoRA so fp8 storage leaves the LoRA weights alone
    else:
        raise ValueError(f'models must be "real", "tiny-random" or FluxComponents, got {models!r}')
    return AnchorGenerator(comps, cfg, prompts=job_prompts(job, cfg), references=references)


def anchor_style(job, k: int, cfg: AnchorConfig) -> int:
    """Anchor k's style index: ``job.anchor_style(k)`` (the ``[anchor_styles]`` table), else ``[anchors] style``."""
    pick = getattr(job, "anchor_style", None)
    style = pick(k) if callable(pick) else None
    return cfg.style if style is None else int(style)


def anchor_index(arc, frame: int) -> int:
    """The anchor a (prepared arc, local frame) view is: anchor 0 at arc 0's first frame, anchor k + 1 at arc
    k's last (:func:`videofrom3d.chaining.anchor_view` inverted)."""
    return int(arc.index) + (1 if frame > 0 else 0)
