"""The inbetweening sampler (GGI, paper 3.3): a plain DDIM loop over the CogVideoX transformer.

For each step: the noisy latents, the endpoint latents and the edge latents are concatenated on the
channel axis (16 | 16 | 16 = 48), the transformer predicts v for the prompt and for the empty prompt,
classifier-free guidance mixes the two, and the CogVideoX DDIM scheduler (v-prediction, zero terminal
SNR, trailing spacing, eta 0) steps. With the end latent zeroed and no edge channels this is exactly
diffusers' ``CogVideoXImageToVideoPipeline`` (tests/test_inbetween_sampling.py checks it).

Randomness: every draw comes from generators seeded by ``seed``: the VAE posterior samples of the
endpoints and edges from ``seed``, the degradation noise from ``seed + NOISE_SEED_OFFSET``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from videofrom3d.inbetween.components import CogVideoXComponents
from videofrom3d.inbetween.conditioning import (
    edge_latents,
    endpoint_latents,
    initial_latents,
    latent_frame_count,
    video_frame_count,
)
from videofrom3d.inbetween.config import InbetweenConfig, InbetweenError

NOISE_SEED_OFFSET = 1_000_003  # the degradation noise's stream, apart from the VAE samples' stream


def encode_text(tokenizer, text_encoder, prompt: str, max_length: int, device=None) -> torch.Tensor:
    """T5 embeddings (1, max_length, D) of ``prompt``, padded/truncated to the transformer's text length."""
    ids = tokenizer(
        [prompt], padding="max_length", max_length=max_length, truncation=True, add_special_tokens=True, return_tensors="pt"
    ).input_ids
    dev = device if device is not None else next(text_encoder.parameters()).device
    with torch.no_grad():
        return text_encoder(ids.to(dev))[0]


def _grid_crop(grid_h: int, grid_w: int, base_h: int, base_w: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """The region of the base (training) patch grid that a ``grid_h x grid_w`` grid maps to: the largest
    box of the same aspect ratio, centred ((top, left), (bottom, right))."""
    if grid_h / grid_w > base_h / base_w:
        h, w = base_h, int(round(base_h * grid_w / grid_h))
    else:
        h, w = int(round(base_w * grid_h / grid_w)), base_w
    top, left = int(round((base_h - h) / 2.0)), int(round((base_w - w) / 2.0))
    return (top, left), (top + h, left + w)


def rotary_embeddings(transformer, latent_frames: int, latent_h: int, latent_w: int, device=None):
    """3D RoPE (cos, sin) of CogVideoX 1.0 for a (latent_frames, latent_h, latent_w) latent video."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed

    cfg = transformer.config
    if not cfg.use_rotary_positional_embeddings:
        return None
    p = cfg.patch_size
    grid_h, grid_w = latent_h // p, latent_w // p
    crop = _grid_crop(grid_h, grid_w, cfg.sample_height // p, cfg.sample_width // p)
    return get_3d_rotary_pos_embed(
        embed_dim=cfg.attention_head_dim,
        crops_coords=crop,
        grid_size=(grid_h, grid_w),
        temporal_size=latent_frames,
        device=device,
    )


def denoise(
    transformer,
    scheduler,
    latents: torch.Tensor,
    condition: torch.Tensor,
    prompt_embeds: torch.Tensor,
    negative_embeds: torch.Tensor | None,
    steps: int,
    guidance_scale: float,
    device=None,
    dtype: torch.dtype | None = None,
    eta: float = 0.0,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    cfg_batch: bool = True,
    cache_start_step: int = 0,
    attention: str = "native",
) -> torch.Tensor:
    """Run ``steps`` scheduler steps from ``latents`` (1, T, 16, h, w) with ``condition`` (1, T, C, h, w)
    concatenated to the model input; CFG when ``guidance_scale > 1`` (negative branch first, as diffusers).
    Latents stay float32 between steps; the model runs in ``dtype``. Returns the final latents (float32).
    ``cfg_batch=False`` runs the two CFG passes one after the other (half the activation memory; equal up to
    float rounding). A transformer with diffusers cache hooks caches from ``cache_start_step``;
    ``attention`` a torch SDPA kernel ("_native_flash", "_native_cudnn", "_native_efficient") or "native"."""
    from videofrom3d.speed import StepCache
    if getattr(transformer.config, "patch_size_t", None) is not None:
        raise InbetweenError("CogVideoX 1.5 transformers (temporal patches) are not supported; use CogVideoX-5B-I2V")
    device = torch.device(device) if device is not None else latents.device
    dtype = dtype or prompt_embeds.dtype
    use_cfg = guidance_scale > 1.0
    text = torch.cat([negative_embeds, prompt_embeds]) if use_cfg else prompt_embeds
    text = text.to(device=device, dtype=dtype)
    condition = condition.to(device=device, dtype=dtype)
    condition = torch.cat([condition] * 2) if use_cfg else condition
    latents = latents.to(device=device, dtype=torch.float32)
    _, t_count, _, h, w = latents.shape
    rope = rotary_embeddings(transformer, t_count, h, w, device)
    scheduler.set_timesteps(steps, device=device)
    latents = latents * scheduler.init_noise_sigma
    cache = StepCache(transformer, cache_start_step)
    cache.begin()

    def velocity(x, txt, cond, t, context, step):
        with torch.no_grad(), cache.call(context, step), _sdpa_kernel(attention):
            return transformer(
                hidden_states=torch.cat([x.to(dtype), cond], dim=2),
                encoder_hidden_states=txt,
                timestep=t.expand(x.shape[0]),
                image_rotary_emb=rope,
                return_dict=False,
            )[0].float()

    for i, t in enumerate(scheduler.timesteps):
        model_in = torch.cat([latents] * 2) if use_cfg else latents
        model_in = scheduler.scale_model_input(model_in, t)
        if use_cfg and not cfg_batch:
            half = len(model_in) // 2
            v = torch.cat([velocity(model_in[:half], text[:half], condition[:half], t, "uncond", i),
                           velocity(model_in[half:], text[half:], condition[half:], t, "cond", i)])
        else:
            v = velocity(model_in, text, condition, t, "cfg" if use_cfg else "cond", i)
        if use_cfg:
            v_uncond, v_text = v.chunk(2)
            v = v_uncond + guidance_scale * (v_text - v_uncond)
        latents = scheduler.step(v, t, latents, eta=eta, return_dict=False)[0]
        if on_step is not None:
            on_step(i, int(t), latents)
    return latents


def _sdpa_kernel(name: str):
    """A context that makes torch SDPA try one fused kernel first ("_native_flash", "_native_cudnn",
    "_native_efficient"), the others after it when it cannot run; "native" leaves torch's order."""
    import contextlib

    from torch.nn.attention import SDPBackend, sdpa_kernel

    kernels = {"_native_flash": SDPBackend.FLASH_ATTENTION, "_native_cudnn": SDPBackend.CUDNN_ATTENTION,
               "_native_efficient": SDPBackend.EFFICIENT_ATTENTION}
    if name not in kernels:
        return contextlib.nullcontext()
    order = [kernels[name], *[k for k in kernels.values() if k != kernels[name]], SDPBackend.MATH]
    return sdpa_kernel(order, set_priority=True)


def vae_decode_video(vae, latents: torch.Tensor, device=None) -> np.ndarray:
    """(1, T, 16, h, w) scaled latents -> (4(T-1)+1, H, W, 3) float32 frames in [0, 1]."""
    p = next(vae.parameters())
    dev = torch.device(device) if device is not None else p.device
    z = latents.permute(0, 2, 1, 3, 4).to(device=dev, dtype=p.dtype)
    scale = float(vae.config.scaling_factor)
    z = z * scale if getattr(vae.config, "invert_scale_latents", False) else z / scale
    with torch.no_grad():
        video = vae.decode(z).sample
    video = (video.float() / 2 + 0.5).clamp(0, 1)
    return video[0].permute(1, 2, 3, 0).cpu().numpy().astype(np.float32)


def check_transformer_layout(transformer, latent_frames: int, latent_h: int, latent_w: int) -> None:
    """Errors that say what to change when the arc does not fit the transformer's fixed grid."""
    cfg = transformer.config
    if cfg.use_learned_positional_embeddings:
        if (latent_h, latent_w) != (cfg.sample_height, cfg.sample_width):
            raise InbetweenError(
                f"this CogVideoX transformer generates {cfg.sample_width * 8}x{cfg.sample_height * 8} frames only "
                f"(learned positional embeddings); the arc is {latent_w * 8}x{latent_h * 8}: set [size] width = "
                f"{cfg.sample_width * 8}, height = {cfg.sample_height * 8}"
            )
        want = latent_frame_count(cfg.sample_frames)
        if latent_frames != want:
            raise InbetweenError(
                f"this CogVideoX transformer generates {want} latent frames ({cfg.sample_frames} video frames); the "
                f"arc has {latent_frames}: use [arcs] frames_per_arc = {cfg.sample_frames - 4} (paper: 45)"
            )


def inbetween_arc(
    components: CogVideoXComponents,
    start: np.ndarray,
    end: np.ndarray | None,
    edge_maps: np.ndarray | None,
    warped_noise: np.ndarray | None,
    prompt: str | tuple[torch.Tensor, torch.Tensor],
    cfg: InbetweenConfig | None = None,
    seed: int = 0,
    device=None,
    frame_count: int | None = None,
    on_step: Callable[[int, int, torch.Tensor], None] | None = None,
    return_decoded: bool = False,
    speed=None,
):
    """Frames between ``start`` and ``end`` along the arc (paper 3.3) -> (F, H, W, 3) float32 in [0, 1].

    ``start``/``end`` (H, W, 3) in [0, 1] (``end=None``: no end frame); ``edge_maps`` (F, H, W) in [0, 1]
    (ignored by a 32-channel transformer, required by a 48-channel one); ``warped_noise`` (T, 16, H/8, W/8)
    or None for plain Gaussian noise; ``prompt`` a string (encoded here with the components' T5) or the pair
    ``(prompt_embeds, negative_embeds)``. F is ``len(edge_maps)``, else ``frame_count``, else every decoded
    frame: 13 latents decode to 49 frames, of which the authors keep the first 46 (the last 3 pad the
    repeated end). ``return_decoded`` also returns all decoded frames. ``speed``: the
    :class:`videofrom3d.speed.SpeedSwitches` in effect (CFG batching, attention kernel), default batched CFG."""
    cfg = cfg if cfg is not None else InbetweenConfig()
    transformer, vae = components.transformer, components.vae
    device = torch.device(device) if device is not None else next(transformer.parameters()).device
    compute_dtype = _compute_dtype(transformer)
    latent_ch = int(transformer.config.out_channels)
    cond_ch = components.condition_channels
    if cond_ch not in (latent_ch, 2 * latent_ch):
        raise InbetweenError(
            f"transformer in_channels={transformer.config.in_channels}: expected {2 * latent_ch} (noise | image) or "
            f"{3 * latent_ch} (noise | endpoints | edges, GGI)"
        )
    with_edges = cond_ch == 2 * latent_ch
    if with_edges and edge_maps is None:
        raise InbetweenError("this GGI transformer (48 input channels) needs the arc's edge maps")

    start = np.asarray(start, dtype=np.float32)
    height, width = start.shape[:2]
    if warped_noise is not None:
        t_count = int(np.asarray(warped_noise).shape[-4])
    elif edge_maps is not None:
        t_count = latent_frame_count(len(edge_maps))
    else:
        t_count = latent_frame_count(transformer.config.sample_frames)
    lat_h, lat_w = height // 8, width // 8
    check_transformer_layout(transformer, t_count, lat_h, lat_w)
    if edge_maps is not None and with_edges:
        edge_maps = np.asarray(edge_maps, dtype=np.float32)
        if edge_maps.shape[1:3] != (height, width):
            raise InbetweenError(f"edge maps are {edge_maps.shape[2]}x{edge_maps.shape[1]}, the start frame {width}x{height}")
        if latent_frame_count(len(edge_maps)) != t_count:
            raise InbetweenError(
                f"{len(edge_maps)} edge maps give {latent_frame_count(len(edge_maps))} latent frames, the warped noise "
                f"has {t_count}"
            )

    if isinstance(prompt, str):
        if components.text_encoder is None:
            raise InbetweenError("the text encoder was released; pass (prompt_embeds, negative_embeds)")
        length = int(transformer.config.max_text_seq_length)
        prompt_embeds = encode_text(components.tokenizer, components.text_encoder, prompt, length)
        negative_embeds = encode_text(components.tokenizer, components.text_encoder, cfg.negative_prompt, length)
    else:
        prompt_embeds, negative_embeds = prompt

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        cond = [endpoint_latents(vae, start, end if cfg.use_end_frame else None, t_count, gen, cfg.encode_mode, device)]
        if with_edges:
            cond.append(edge_latents(vae, edge_maps, gen, cfg.encode_mode, device))
    condition = torch.cat(cond, dim=2)
    if condition.shape[1] != t_count or condition.shape[3:] != (lat_h, lat_w):
        raise InbetweenError(f"conditioning latents {tuple(condition.shape)} do not match ({t_count}, {lat_h}, {lat_w})")

    latents = initial_latents(warped_noise, cfg.degradation, seed + NOISE_SEED_OFFSET, (t_count, latent_ch, lat_h, lat_w))
    latents = denoise(
        transformer,
        components.scheduler,
        latents,
        condition,
        prompt_embeds,
        negative_embeds,
        cfg.steps,
        cfg.guidance_scale,
        device=device,
        dtype=compute_dtype,
        eta=cfg.eta,
        on_step=on_step,
        cfg_batch=True if speed is None else speed.cfg_batch,
        cache_start_step=cfg.cache_start_step,
        attention="native" if speed is None else speed.attention,
    )
    decoded = vae_decode_video(vae, latents, device)
    if len(decoded) != video_frame_count(t_count):
        raise InbetweenError(f"the VAE decoded {len(decoded)} frames from {t_count} latents")
    f = len(edge_maps) if edge_maps is not None else (frame_count or len(decoded))
    frames = decoded[:f]
    return (frames, decoded) if return_decoded else frames


def _compute_dtype(module) -> torch.dtype:
    """The dtype a module computes in: its parameters' dtype, or the layerwise-casting compute dtype when its
    weights are stored in float8."""
    dtype = next(module.parameters()).dtype
    if dtype in (torch.float8_e4m3fn, torch.float8_e5m2):
        return torch.bfloat16
    return dtype
