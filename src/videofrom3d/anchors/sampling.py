"""Sparse appearance-guided sampling (SAG, paper 3.2, Eq. 1): FLUX + HED ControlNet, one plain Euler loop.

Flow matching in FLUX's convention: ``z_t = (1 - t) * z_data + t * noise`` with t = 1 pure noise, and the
model predicts the velocity ``v = noise - z_data``; one Euler step is ``z <- z + (t_next - t) * v``.

Eq. 1 (the paper's latent replacement): for the first K steps, before the model call, the latents at
*observed* positions (pixels of the previous anchor visible in this view, warped here) are replaced by the
observed content noised to the current level with the *same* initial noise::

    z_t <- m * ((1 - t) * z_obs + t * noise) + (1 - m) * z_t

The official run (KIMGEONUNG/VideoFrom3D ``sag_generate_anchor_view.py``, ``src/flux/sampling.py``) uses K = 12 (``i < 12``); step 0 is a no-op because
t_0 = 1 and z_0 is that same noise, so 11 replacements take effect (steps 1-11 of 25).

Sigma schedule. Both schedules are ``linspace(1, 1/n, n)`` shifted by ``t' = e^mu / (e^mu + 1/t - 1)``; they
differ in mu:

- ``"official"`` (default): x-flux's ``mu`` from ``seq = (W/8)(H/8) // 256`` (a quirk: it divides the
  latent pixel count by 256 instead of counting 2x2 tokens), about 0.46 at 720x480 and 1072x720. The paper's
  anchors, and its K = 12 replacement steps, were tuned on this schedule; a different schedule moves where
  the replacement stops in noise level (at 720x480 ``t_12`` is 0.63 official vs 0.68 diffusers), so we keep
  it by default.
- ``"diffusers"``: diffusers' ``mu`` from the packed token count (0.69 at 720x480), as
  ``FluxControlNetPipeline`` computes it; used by the equivalence test.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import torch

SCHEDULES = ("official", "diffusers")


# ---------------------------------------------------------------------------------------------------------
# Latent layout


def pack_latents(latents: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, h/2 * w/2, 4C): FLUX's 2x2 patches as tokens (same order as diffusers)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c, h // 2, 2, w // 2, 2).permute(0, 2, 4, 1, 3, 5)
    return x.reshape(b, (h // 2) * (w // 2), c * 4)


def unpack_latents(tokens: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """(B, h/2 * w/2, 4C) -> (B, C, h, w); inverse of :func:`pack_latents`."""
    b, _, d = tokens.shape
    x = tokens.view(b, h // 2, w // 2, d // 4, 2, 2).permute(0, 3, 1, 4, 2, 5)
    return x.reshape(b, d // 4, h, w)


def latent_image_ids(h: int, w: int, device=None, dtype=torch.float32) -> torch.Tensor:
    """(h/2 * w/2, 3) RoPE positions (0, row, col) of the packed tokens."""
    ids = torch.zeros(h // 2, w // 2, 3)
    ids[..., 1] = torch.arange(h // 2)[:, None]
    ids[..., 2] = torch.arange(w // 2)[None, :]
    return ids.reshape(-1, 3).to(device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------------------
# Schedule


def schedule_mu(schedule: str, latent_h: int, latent_w: int, scheduler_config=None) -> float:
    """The shift parameter mu of the sigma schedule (see the module docstring)."""
    cfg = dict(scheduler_config or {})
    base_seq, max_seq = cfg.get("base_image_seq_len", 256), cfg.get("max_image_seq_len", 4096)
    base_shift, max_shift = cfg.get("base_shift", 0.5), cfg.get("max_shift", 1.15)
    if schedule == "official":
        seq = (latent_h * latent_w) // 256  # x-flux: (W/8)(H/8) // (16*16)
    elif schedule == "diffusers":
        seq = (latent_h // 2) * (latent_w // 2)
    else:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    slope = (max_shift - base_shift) / (max_seq - base_seq)
    return base_shift + slope * (seq - base_seq)


def flux_sigmas(scheduler, steps: int, latent_h: int, latent_w: int, schedule: str = "official",
                device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Set ``scheduler`` for ``steps`` Euler steps; returns (sigmas (steps+1,) ending in 0, model timesteps
    (steps,) = sigmas * 1000 as the scheduler stores them)."""
    mu = schedule_mu(schedule, latent_h, latent_w, scheduler.config)
    base = np.linspace(1.0, 1.0 / steps, steps)
    if scheduler.config.get("use_dynamic_shifting", False):
        scheduler.set_timesteps(sigmas=base, mu=mu, device=device)
    else:  # a scheduler without dynamic shifting: apply the same exponential shift by hand
        shifted = math.exp(mu) / (math.exp(mu) + (1.0 / base - 1.0))
        scheduler.set_timesteps(sigmas=shifted, device=device)
    return scheduler.sigmas, scheduler.timesteps


# ---------------------------------------------------------------------------------------------------------
# Eq. 1


def replace_observed_latents(latents: torch.Tensor, z_obs: torch.Tensor, noise: torch.Tensor, mask: torch.Tensor,
                             t: float | torch.Tensor) -> torch.Tensor:
    """Eq. 1: where ``mask`` (bool, broadcastable) is True, ``(1 - t) * z_obs + t * noise``; elsewhere
    ``latents`` unchanged. Any layout (packed or not) as long as the four tensors agree."""
    reference = (1 - t) * z_obs + t * noise
    return torch.where(mask, reference.to(latents.dtype), latents)


# ---------------------------------------------------------------------------------------------------------
# The loop


@torch.no_grad()
def sample_anchor(
    transformer,
    controlnet,
    control_image: torch.Tensor,
    noise: torch.Tensor,
    sigmas: torch.Tensor,
    timesteps: torch.Tensor,
    prompt_embeds: torch.Tensor,
    pooled_prompt_embeds: torch.Tensor,
    negative_prompt_embeds: torch.Tensor | None = None,
    negative_pooled_prompt_embeds: torch.Tensor | None = None,
    guidance: float = 4.0,
    true_cfg: float = 3.5,
    true_cfg_start_step: int = 1,
    controlnet_scale: float = 0.8,
    controlnet_on_negative: bool = True,
    replace_steps: int = 12,
    observed_latents: torch.Tensor | None = None,
    observed_mask: torch.Tensor | None = None,
    controlnet_prompt_embeds: torch.Tensor | None = None,
    step_callback: Callable[[int, torch.Tensor], None] | None = None,
    progress: bool = False,
    cfg_batch: bool = False,
    cache_start_step: int = 0,
) -> torch.Tensor:
    """Sample one anchor's latents (paper Eq. 1 with FLUX + HED ControlNet).

    Shapes: ``control_image`` (1, 3, H, W) in [-1, 1] (the edge map, white lines); ``noise`` (1, C, h, w) the
    initial latent noise, h = H/8; ``sigmas`` (n+1,) from :func:`flux_sigmas` and ``timesteps`` (n,);
    ``prompt_embeds`` (1, L, D) T5, ``pooled_prompt_embeds`` (1, P) CLIP; ``observed_latents`` (1, C, h, w) the
    VAE latents of the warped previous anchor and ``observed_mask`` (1, 1 or C, h, w) bool, True where
    observed. Returns the final latents (1, C, h, w) in float32.

    True CFG (the official run): from ``true_cfg_start_step`` on, ``v = v_neg + true_cfg * (v_pos - v_neg)``
    with the empty prompt as negative; both passes run the ControlNet (``controlnet_on_negative=False``
    reuses the positive pass's residuals, as diffusers' pipeline does). ``true_cfg <= 1`` disables it.
    ``controlnet_prompt_embeds`` (1, L', D): the ControlNet's context in the conditional pass when it differs
    from the transformer's (reference mode: the text tokens without the appended Redux tokens); the
    negative pass gives both models ``negative_prompt_embeds``.
    ``step_callback(i, latents_packed)`` sees the latents after the replacement of step i, before the model.
    ``cfg_batch`` runs both CFG passes as one batch of 2 (equal to the two passes up to float rounding; not
    with ``controlnet_prompt_embeds``, whose contexts differ in length).
    A transformer with diffusers cache hooks (:func:`videofrom3d.speed.enable_step_cache`) caches from
    ``cache_start_step`` on.
    """
    from videofrom3d.speed import StepCache

    _, _, h, w = noise.shape
    dtype = prompt_embeds.dtype
    device = noise.device
    steps = len(timesteps)
    noise_tokens = pack_latents(noise.float())
    latents = noise_tokens.clone()  # float32 between steps
    replace = observed_latents is not None and observed_mask is not None and replace_steps > 0
    if replace:
        obs_tokens = pack_latents(observed_latents.float())
        mask_tokens = pack_latents(observed_mask.expand_as(observed_latents).float()) > 0.5
    img_ids = latent_image_ids(h, w, device, dtype)
    guidance_vec = torch.full((1,), guidance, device=device, dtype=torch.float32)
    control_image = control_image.to(device, dtype)
    repeat = getattr(controlnet, "input_hint_block", None) is not None  # XLabs: residual j % 2 to block j

    def txt_ids(embeds: torch.Tensor) -> torch.Tensor:
        return torch.zeros(embeds.shape[1], 3, device=device, dtype=dtype)  # FLUX: text tokens at position 0

    cache = StepCache(transformer, cache_start_step)
    cache.begin()

    def run_controlnet(x, timestep, embeds, pooled):
        b = x.shape[0]
        return controlnet(
            hidden_states=x, controlnet_cond=control_image.expand(b, -1, -1, -1), conditioning_scale=controlnet_scale,
            timestep=timestep.expand(b), guidance=guidance_vec.expand(b), pooled_projections=pooled,
            encoder_hidden_states=embeds, txt_ids=txt_ids(embeds), img_ids=img_ids, return_dict=False,
        )

    def velocity(x: torch.Tensor, timestep: torch.Tensor, embeds: torch.Tensor, pooled: torch.Tensor,
                 residuals=None, context: str = "cond", step: int = 0, cn_embeds: torch.Tensor | None = None):
        if residuals is None:
            residuals = run_controlnet(x, timestep, embeds if cn_embeds is None else cn_embeds, pooled)
        block_res, single_res = residuals
        b = x.shape[0]
        with cache.call(context, step):
            return residuals, transformer(
                hidden_states=x, timestep=timestep.expand(b), guidance=guidance_vec.expand(b), pooled_projections=pooled,
                encoder_hidden_states=embeds, controlnet_block_samples=block_res,
                controlnet_single_block_samples=single_res, txt_ids=txt_ids(embeds), img_ids=img_ids, return_dict=False,
                controlnet_blocks_repeat=repeat,
            )[0]

    def batched_cfg_velocity(x, timestep, step):
        """Positive and negative passes in one batch of 2 -> (v_pos, v_neg)."""
        embeds = torch.cat([prompt_embeds, negative_prompt_embeds])
        pooled = torch.cat([pooled_prompt_embeds, negative_pooled_prompt_embeds])
        if controlnet_on_negative:
            residuals = run_controlnet(torch.cat([x, x]), timestep, embeds, pooled)
        else:  # the positive pass's residuals serve both
            residuals = run_controlnet(x, timestep, prompt_embeds, pooled_prompt_embeds)
            residuals = tuple(None if r is None else [t.repeat(2, *[1] * (t.ndim - 1)) for t in r] for r in residuals)
        _, v = velocity(torch.cat([x, x]), timestep, embeds, pooled, residuals, "cfg", step)
        return v.chunk(2)

    bar = _progress(steps, progress)
    for i in range(steps):
        t, t_next = sigmas[i], sigmas[i + 1]
        if replace and i < replace_steps:  # Eq. 1
            latents = replace_observed_latents(latents, obs_tokens, noise_tokens, mask_tokens, t)
        if step_callback is not None:
            step_callback(i, latents)
        x = latents.to(dtype)
        timestep = (timesteps[i] / 1000).expand(1).to(dtype)  # = t, as diffusers feeds it
        use_cfg = true_cfg > 1 and i >= true_cfg_start_step and negative_prompt_embeds is not None
        if use_cfg and cfg_batch and controlnet_prompt_embeds is None:
            v, v_neg = batched_cfg_velocity(x, timestep, i)
        else:
            residuals, v = velocity(x, timestep, prompt_embeds, pooled_prompt_embeds, step=i,
                                    cn_embeds=controlnet_prompt_embeds)
            if use_cfg:
                _, v_neg = velocity(x, timestep, negative_prompt_embeds, negative_pooled_prompt_embeds,
                                    None if controlnet_on_negative else residuals, "uncond", i)
        if use_cfg:
            v = v_neg + true_cfg * (v - v_neg)
        latents = latents + (t_next - t) * v.float()  # Euler: z <- z + (t_next - t) * v
        bar.update()
    bar.close()
    return unpack_latents(latents, h, w)


def _progress(total: int, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, disable=not enabled, desc="anchor", leave=False)
